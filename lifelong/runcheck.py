"""A run folder is untrusted input (DESIGN.md, "Run format"): the checks `open_run` makes on a
manifest before anything else reads it.

- Types: every field the pages, `eval` and the trainer read has the type and shape they
  expect (a string where an entry should be, `snapshots` not a list, `latent_dim: "abc"` ...),
  so one malformed run is refused in one line at the door instead of failing later on some
  page, or on a page about *other* runs that lists it.
- Confinement: every file a manifest names (snapshots, aliases' sources are names inside
  them, stored extras, evaluation data) is a plain file directly inside the run folder: names
  are plain (no "/", no "..", not hidden) and links are refused. A refusal names the entry,
  never anything about what the name would have led to.
- Sizes: files are checked against their listed byte counts and a cap before they are read.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from lifelong import events

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.safetensors$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_FILE_BYTES = 2 * 2**30  # one snapshot or stored array: far above any run we make
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_LOG_BYTES = 256 * 2**20
MAX_TASKS = 1000


class ManifestError(ValueError):
    """What is wrong with a manifest, in a few words (open_run prefixes the run's name)."""


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _file_entry(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} is not an object")
    name = entry.get("file")
    if not isinstance(name, str) or not FILE_NAME.match(name) or ".." in name:
        raise ManifestError(f"{where} names a file that is not a plain file name of the run")
    if not isinstance(entry.get("sha256"), str) or not SHA256.match(entry["sha256"]):
        raise ManifestError(f"{where} has no valid sha256")
    if "bytes" in entry and not (_int(entry["bytes"]) and 0 <= entry["bytes"] <= MAX_FILE_BYTES):
        raise ManifestError(f"{where} has an invalid byte count")


def _matrix(value, where: str, n_tasks: int) -> None:
    if not isinstance(value, list) or len(value) > n_tasks:
        raise ManifestError(f"{where} is not a list of at most {n_tasks} rows")
    for row in value:
        if not isinstance(row, list) or len(row) > n_tasks or not all(map(_number, row)):
            raise ManifestError(f"{where} has a row that is not a list of numbers")


def check_manifest(manifest: dict, known_families) -> None:
    """Raise ManifestError if `manifest` (parsed JSON, format already checked) is malformed."""
    for key in ("family", "config", "tasks", "snapshots"):
        if key not in manifest:
            raise ManifestError(f"manifest.json lacks {key!r}")
    family = manifest["family"]
    if not isinstance(family, str) or family not in known_families:
        shown = family if isinstance(family, str) else type(family).__name__
        if isinstance(family, str) and ":" in family:  # a plugin's key (models/plugins.py)
            raise ManifestError(
                f"model family {shown[:80]!r} is a plugin that is not installed here"
                " (install the package that provides it)"
            )
        raise ManifestError(f"unknown model family {shown[:40]!r}")
    if not isinstance(manifest["config"], dict):
        raise ManifestError("config is not an object")
    tasks = manifest["tasks"]
    if (
        not isinstance(tasks, list)
        or not 0 < len(tasks) <= MAX_TASKS
        or not all(isinstance(t, str) and 0 < len(t) <= 1000 for t in tasks)
    ):
        raise ManifestError(f"tasks is not a list of 1 to {MAX_TASKS} dataset specs")
    snaps = manifest["snapshots"]
    if not isinstance(snaps, list):
        raise ManifestError("snapshots is not a list")
    seen = []
    for i, entry in enumerate(snaps):
        where = f"snapshot entry {i}"
        _file_entry(entry, where)
        k = entry.get("after_task")
        if not _int(k) or not 0 <= k < len(tasks):
            raise ManifestError(f"{where} has no valid after_task (0..{len(tasks) - 1})")
        if seen and k <= seen[-1]:
            raise ManifestError(f"{where}: snapshots are not in task order")
        seen.append(k)
        if not isinstance(entry.get("arch", {}), dict):
            raise ManifestError(f"{where}: arch is not an object")
        aliases = entry.get("aliases", {})
        if not isinstance(aliases, dict) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in aliases.items()
        ):
            raise ManifestError(f"{where}: aliases is not a map of tensor names")
    for key, kind in (("metrics", dict), ("events", list), ("extras", dict), ("evaldata", dict)):
        if not isinstance(manifest.get(key, kind()), kind):
            raise ManifestError(f"{key} is not {'a list' if kind is list else 'an object'}")
    for name, table in manifest.get("metrics", {}).items():
        _matrix(table, f"metric {str(name)[:40]!r}", len(tasks))
    fmt = manifest.get("events_format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ManifestError(f"events_format {str(fmt)[:20]} is not a version number")
    try:  # typed events (lifelong/events.py): every field of a known kind has its type
        events.load(manifest.get("events", []), fmt)
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    for kind, entries in manifest.get("extras", {}).items():
        if not isinstance(entries, dict):
            raise ManifestError(f"extras {str(kind)[:40]!r} is not an object")
        for k, entry in entries.items():
            _task_key(k, len(tasks), f"extras {kind!r}")
            _file_entry(entry, f"extras {kind!r} entry {k}")
    for k, entry in manifest.get("evaldata", {}).items():
        _task_key(k, len(tasks), "evaldata")
        _file_entry(entry, f"evaldata entry {k}")
    stored = (
        manifest.get("eval", {}).get("metrics", {})
        if isinstance(manifest.get("eval"), dict)
        else {}
    )
    if not isinstance(stored, dict):
        raise ManifestError("eval metrics is not an object")
    for name, entry in stored.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise ManifestError(f"eval metric {str(name)[:40]!r} has no value")
        value = entry["value"]
        table = value.get("per_task") if isinstance(value, dict) else value
        flat = isinstance(table, list) and all(
            isinstance(r, list) and not any(isinstance(v, list | dict) for v in r) for r in table
        )  # a [snapshot][task] matrix (transfer is [snapshot][expert][task]: not drawn as one)
        if flat and table:
            _matrix(table, f"eval metric {str(name)[:40]!r}", len(tasks))
    train = manifest.get("train", {})
    if isinstance(train, dict):
        for key in ("epochs", "batch_size", "world_size"):
            if key in train and not (_int(train[key]) and train[key] >= 1):
                raise ManifestError(f"train {key} is not a positive whole number")
        if train.get("store_dtype", "float32") not in ("float32", "float16"):
            raise ManifestError("train store_dtype is neither float32 nor float16")
        if not isinstance(train.get("overrides", {}), dict):
            raise ManifestError("train overrides is not an object")
    for key, ok in (
        ("seed", _int),
        ("status", lambda v: isinstance(v, str)),
        ("device", lambda v: isinstance(v, str)),
        ("train", lambda v: isinstance(v, dict)),
        ("eval", lambda v: isinstance(v, dict)),
    ):
        if key in manifest and not ok(manifest[key]):
            raise ManifestError(f"{key} has the wrong type")


def _task_key(k, n_tasks: int, where: str) -> None:
    if not (isinstance(k, str) and k.isdigit() and int(k) < n_tasks):
        raise ManifestError(f"{where} has an entry for task {str(k)[:20]!r}, not a task of the run")


def inside(run_dir: Path, name: str, what: str) -> Path:
    """run_dir/name if it is a regular file directly inside run_dir (not a link, not
    anything reached through one), else ManifestError naming only `what`."""
    path = Path(run_dir) / name
    try:
        st = os.lstat(path)
    except OSError:
        raise ManifestError(f"{what} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{what} is not a plain file inside the run folder")
    if path.resolve().parent != Path(run_dir).resolve():
        raise ManifestError(f"{what} is not a plain file inside the run folder")
    return path


def read_capped(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path` (already checked by `inside`), refused if larger than `limit`
    before any of it is read."""
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise ManifestError(f"{what} is {size} bytes (at most {limit})")
        with open(path, "rb") as fh:
            return fh.read(limit + 1)[:limit]
    except OSError as exc:
        raise ManifestError(f"{what} is unreadable ({exc.strerror})") from None
