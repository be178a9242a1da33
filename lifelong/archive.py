"""Runs as zip archives: download any run, and open a run uploaded from elsewhere.

An upload is untrusted; it is accepted only if every member is one of a run's own files
(manifest.json, log.jsonl, the *.safetensors its manifest lists), at the top or in one folder.
zipfile only parses the central directory; members are read here: each local header must
agree with the directory, members may not overlap, only stored or deflated data, inflating
capped at the declared size. Declared sizes must fit `budget` (tied to the archive's own size)
before anything is inflated; then every member is inflated in bounded chunks and checked
(manifest format, each file's listed size and sha256, log.jsonl lines) before anything is
written, so a refused archive costs no disk and a few MB of memory. Only then is the run
unpacked into a temporary folder beside the destination, opened and loaded like any run
(shapes checked before a model is built), marked `.uploaded` and renamed into place. Nothing
is unpickled; every refusal is one line and leaves nothing behind.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from lifelong import evaldata, models, runcheck, runs, zipread
from lifelong.zipread import ALLOWED, CHUNK, ArchiveError, budget  # noqa: F401 (public names)

MAX_MANIFEST_BYTES = 4 * 2**20  # parsed in memory; real manifests are 10-100 kB
MAX_LOG_LINE = 64 * 2**10  # one log record; real ones are a few hundred bytes
MARKER = ".uploaded"  # written into every imported run; dot-files are never exported


def listed_files(manifest: dict) -> dict[str, dict]:
    """File name -> manifest entry ({"file", "sha256", "bytes", ...}) of every file a
    (runcheck-checked) manifest names: snapshots, stored extras, evaluation data."""
    extras = [e for kind in manifest.get("extras", {}).values() for e in kind.values()]
    entries = [*manifest["snapshots"], *extras, *manifest.get("evaldata", {}).values()]
    return {e["file"]: e for e in entries}


def export_zip(run_dir: str | Path) -> bytes:
    """The run's own files (manifest, log and every file the manifest lists: snapshots,
    stored extras, evaluation data) as a zip, in one folder named after the run. Unlisted
    files and dot-files (checkpoints, the `.uploaded` marker) stay behind."""
    run = runs.open_run(run_dir)
    names = {"manifest.json", "log.jsonl", *listed_files(run.manifest)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n in sorted(names):
            p = run.path / n
            if ALLOWED.match(n) and p.is_file() and not p.is_symlink():
                z.write(p, f"{run.name}/{n}")
    return buf.getvalue()


def import_zip(
    data: bytes,
    dest_root: str | Path,
    name: str | None = None,
    fallback_name: str = "",
    source: str | None = None,
) -> Path:
    """Validate an uploaded run archive and unpack it into dest_root/<name>; returns the
    path. The name defaults to the archive's top folder, else `fallback_name` (e.g. the
    uploaded file's stem, made safe). `source` (the uploaded file's name, default
    `fallback_name`) is recorded in the run's `.uploaded` marker. Nothing is written to
    dest_root unless every check passed; any refusal is an ArchiveError of one line."""
    data = bytes(data)
    top, files, spans = zipread.members(data)
    fallback = re.sub(r"[^A-Za-z0-9_.-]+", "-", fallback_name).strip("-_.")[:100]
    name = name or top or fallback or "uploaded-run"
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", name):
        raise ArchiveError(f"run name {name!r}: use letters, digits, '_', '.', '-'")
    dest = Path(dest_root) / name
    if dest.exists():
        raise ArchiveError(f"a run named {name!r} is already there")
    _verify(data, files, spans)  # every member inflated and checked; nothing written yet
    created = _ensure(Path(dest_root))
    try:
        with tempfile.TemporaryDirectory(
            prefix=".upload-", dir=dest_root, ignore_cleanup_errors=True
        ) as tmp:
            staged = Path(tmp) / name
            staged.mkdir()
            for info in files:
                with open(staged / PurePosixPath(info.filename).name, "xb") as out:
                    for chunk in zipread.inflate(data, info, spans[info.filename]):
                        out.write(chunk)
            _check_run(staged)
            marker = {"uploaded": datetime.now(UTC).isoformat(timespec="seconds")}
            marker["from"] = source if source is not None else (fallback_name or name)
            (staged / MARKER).write_text(json.dumps(marker))
            try:
                os.rename(staged, dest)
            except OSError:
                raise ArchiveError(f"a run named {name!r} is already there") from None
    except OSError as exc:
        _remove_created(created)
        raise ArchiveError(f"could not unpack the run: {exc.strerror or exc}") from None
    except BaseException:
        _remove_created(created)
        raise
    return dest


def _verify(data: bytes, files: list[zipfile.ZipInfo], spans: dict) -> None:
    """Inflate every member (chunk by chunk, nothing kept, nothing written) and check it: the
    manifest parses and is this format, each safetensors file is listed there with this size
    and sha256, and every listed file is present; log.jsonl holds JSON objects."""
    by_name = {PurePosixPath(i.filename).name: i for i in files}
    info = by_name["manifest.json"]
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(
            f"manifest.json is {info.file_size:,} bytes (at most {MAX_MANIFEST_BYTES:,})"
        )
    raw = b"".join(zipread.inflate(data, info, spans[info.filename]))
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise ArchiveError("manifest.json is not valid JSON") from None
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    if found != runs.FORMAT:
        raise ArchiveError(f"unsupported format {str(found)[:40]!r} (expected {runs.FORMAT})")
    try:
        runcheck.check_manifest(manifest, models.known())
    except runcheck.ManifestError as exc:
        raise ArchiveError(str(exc)) from None
    listed, shapes = listed_files(manifest), {}
    absent = sorted(set(listed) - set(by_name))
    if absent:
        raise ArchiveError(f"{absent[0]} is listed in manifest.json but not in the archive")
    for f, info in sorted(by_name.items()):
        chunks = zipread.inflate(data, info, spans[info.filename])
        if f == "log.jsonl":
            _check_log(chunks)
        elif f != "manifest.json":
            entry = listed.get(f)
            if entry is None:
                raise ArchiveError(f"{f} is not listed in manifest.json")
            if entry.get("bytes", info.file_size) != info.file_size:
                raise ArchiveError(
                    f"{f} is truncated or altered ({info.file_size} of {entry['bytes']} bytes)"
                )
            digest, head = hashlib.sha256(), bytearray()
            for chunk in chunks:
                digest.update(chunk)
                head += chunk[: CHUNK - len(head)]  # the safetensors header, for its shapes
            if digest.hexdigest() != entry["sha256"]:
                raise ArchiveError(f"{f} does not match its sha256 in manifest.json")
            shapes[f] = _header_shapes(f, bytes(head))
    _check_config(manifest, shapes)


def _header_shapes(f: str, head: bytes) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (its first CHUNK bytes)."""
    n = int.from_bytes(head[:8], "little")
    try:
        if len(head) < 8 or 8 + n > len(head):
            raise ValueError("header missing or over 1 MB")
        header = json.loads(head[8 : 8 + n])
        return {
            k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise ArchiveError(f"{f} is not a valid safetensors file ({zipread.line(exc)})") from None


def _check_config(manifest: dict, shapes: dict[str, dict]) -> None:
    """Every snapshot's tensors (from the headers, aliases followed) have the names and shapes
    its config implies, found on the meta device: a config naming a huge network
    (hidden=150000) is refused before anything is written or allocated."""
    family, state = manifest["family"], {}
    try:
        config = models.config_from_dict(models.family(family)[1], manifest["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ArchiveError(f"config does not fit {family}: {zipread.line(exc)}") from None
    for entry in manifest["snapshots"]:  # in task order (runcheck)
        k, previous = entry["after_task"], dict(state)
        state.update(shapes[entry["file"]])
        for name, source in entry.get("aliases", {}).items():
            state[name] = previous.get(source)  # a missing source: load_model names it
        try:
            expected = models.state_shapes(family, config, entry.get("arch"))
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as exc:
            raise ArchiveError(f"cannot build {family}: {zipread.line(exc)}") from None
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise ArchiveError(f"snapshot after task {k} does not match its config: {what}")
        for name, shape in expected.items():
            if state[name] is not None and state[name] != shape:
                raise ArchiveError(f"tensor {name} has shape {state[name]}, config implies {shape}")


def _check_log(chunks: Iterator[bytes]) -> None:
    """log.jsonl is UTF-8, one JSON object per line; an unterminated last line (a record cut
    by a crash, which readers skip) is allowed."""
    decoder, pending, n = codecs.getincrementaldecoder("utf-8")(), "", 0
    try:
        for chunk in chunks:
            *lines, pending = (pending + decoder.decode(bytes(chunk))).split("\n")
            for line in lines:
                n += 1
                if line.strip():
                    try:
                        record = json.loads(line) if len(line) <= MAX_LOG_LINE else None
                    except (ValueError, RecursionError):
                        record = None
                    if not isinstance(record, dict):
                        raise ArchiveError(f"log.jsonl line {n} is not a JSON object")
            if len(pending) > MAX_LOG_LINE:
                raise ArchiveError(f"log.jsonl line {n + 1} is longer than {MAX_LOG_LINE:,} bytes")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ArchiveError("log.jsonl is not UTF-8 text") from None


def _check_run(path: Path) -> None:
    """open_run (format, confinement, sizes), every snapshot loaded (checksums; shapes from
    the config on the meta device before a model is built), every stored extra and
    evaluation sample read and checked, and no unlisted *.safetensors."""
    try:
        run = runs.open_run(path)
        for k in run.snapshots:
            run.load_model(k)
        for kind, entries in run.manifest.get("extras", {}).items():
            for k in entries:
                run.extra(kind, int(k))
        for k in run.manifest.get("evaldata", {}):
            evaldata.stored(run, int(k))
        listed = listed_files(run.manifest)
    except runs.RunError as exc:
        raise ArchiveError(zipread.line(exc).split(": ", 1)[-1]) from None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, StopIteration) as exc:
        raise ArchiveError(
            f"manifest.json is malformed ({type(exc).__name__}: {zipread.line(exc)})"
        ) from None
    stray = sorted(p.name for p in path.glob("*.safetensors") if p.name not in listed)
    if stray:
        raise ArchiveError(f"{stray[0]} is not listed in manifest.json")


def _ensure(root: Path) -> list[Path]:
    """Create root (and missing parents); the folders created, deepest first."""
    created = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the runs folder ({exc.strerror or exc})") from None
    if not root.is_dir():
        raise ArchiveError("the runs folder is not a folder")
    return created


def _remove_created(created: list[Path]) -> None:
    """Remove the folders _ensure created, if still empty (a refusal leaves nothing)."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return
