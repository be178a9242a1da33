"""The run format (DESIGN.md, "Run format"): a folder with manifest.json, one safetensors
snapshot per finished task and log.jsonl. Safetensors only: nothing here unpickles anything.

Snapshots store only the tensors that changed since the previous snapshot (frozen experts are
written once), so snapshot k is rebuilt by reading task-00 .. task-k in order. A changed tensor
equal to one the previous snapshot held under another name is not stored again either: the
snapshot's manifest entry lists it under "aliases" {name: that name} (LGM's teacher is the
previous snapshot's student, InfoGAN's frozen generator the previous generator). Every file is
written to a temporary name and renamed, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lifelong import events, models, runcheck

FORMAT = "lifelong-run/1"


class RunError(ValueError):
    """A run folder that cannot be opened; the message names the run and what is wrong."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path` and rename it into place: a crash or
    a full disk leaves the old file whole; a failed write removes its temporary file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_manifest(run_dir: Path, manifest: dict) -> None:
    atomic_write(Path(run_dir) / "manifest.json", json.dumps(manifest, indent=1).encode())


def new_manifest(
    family: str, config: dict, tasks: list[str], seed: int, device: str, train_args: dict
) -> dict:
    return {
        "format": FORMAT,
        "family": family,
        "config": config,
        "tasks": tasks,
        "snapshots": [],
        "metrics": {},
        "events": [],
        "events_format": events.FORMAT,
        "seed": seed,
        "device": device,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "lifelong": __import__("lifelong").__version__,
        },
        "train": train_args,
        "status": "running",
    }


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of dtype, shape and bytes: equal digests mean equal tensors, so one may stand in
    for the other (two zero biases of 64 floats and of 8 x 8 floats share their bytes only)."""
    t = t.detach().cpu().contiguous()
    head = f"{t.dtype}{tuple(t.shape)}".encode()
    return hashlib.sha256(head + t.numpy().tobytes()).hexdigest()


def save_snapshot(
    run_dir: Path,
    manifest: dict,
    model: models.GenerativeModel,
    task: int,
    stored: dict[str, str],
    dtype: str = "float32",
) -> dict:
    """Write task-{task:02d}.safetensors with the tensors whose bytes changed since the last
    snapshot (`stored`: name -> digest of the saved value, updated in place) and append its
    entry to the manifest (not yet written); a changed tensor equal to another name's value in
    the last snapshot becomes an alias instead (module doc). dtype="float16" halves float
    tensors on disk."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    previous = {digest: name for name, digest in stored.items()}  # the last snapshot's values
    changed, aliases = {}, {}
    for name, value in state.items():
        digest = tensor_digest(value)
        if stored.get(name) == digest:
            continue
        source = previous.get(digest)
        if source is not None and source != name:
            aliases[name] = source
        else:
            if dtype == "float16" and value.is_floating_point():
                value = value.half()
            changed[name] = value
        stored[name] = digest
    # One metadata key: safetensors writes several keys in a random order, so the same weights
    # would give different bytes on every regeneration (and grow pretrained/'s git history).
    meta = {
        "lifelong-run": json.dumps(
            {
                "format": FORMAT,
                "family": model.family,
                "after_task": task,
                "config": model.config_dict(),
                "arch": model.arch(),
            },
            sort_keys=True,
        )
    }
    data = st_save(changed, metadata=meta)
    fname = f"task-{task:02d}.safetensors"
    atomic_write(Path(run_dir) / fname, data)
    entry = {
        "after_task": task,
        "file": fname,
        "sha256": hashlib.sha256(data).hexdigest(),
        "arch": model.arch(),
        "tensors": len(changed),
        "bytes": len(data),
    }
    if aliases:  # only then, so runs without any keep their manifests as they were
        entry["aliases"] = aliases
    manifest["snapshots"] = [s for s in manifest["snapshots"] if s["after_task"] != task]
    manifest["snapshots"].append(entry)
    return entry


def save_extra(
    run_dir: Path, manifest: dict, kind: str, task: int, tensors: dict[str, torch.Tensor]
) -> dict:
    """Write `{kind}-{task:02d}.safetensors` (data precomputed for the app beside snapshot
    `task`, e.g. kind="map" for the latent map's default projection) and record its checksum
    in manifest["extras"][kind] (not yet written)."""
    data = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    fname = f"{kind}-{task:02d}.safetensors"
    atomic_write(Path(run_dir) / fname, data)
    entry = {"file": fname, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest.setdefault("extras", {}).setdefault(kind, {})[str(task)] = entry
    return entry


def drop_extra(run_dir: Path, manifest: dict, kind: str, task: int) -> None:
    """Forget `{kind}-{task:02d}.safetensors`: its manifest entry (not yet written), then the
    file, named by this project's own pattern rather than by the manifest."""
    entries = manifest.get("extras", {}).get(kind, {})
    if entries.pop(str(task), None) is not None:
        (Path(run_dir) / f"{kind}-{task:02d}.safetensors").unlink(missing_ok=True)
    if not entries:
        manifest.get("extras", {}).pop(kind, None)


@dataclass
class Run:
    """An opened, validated run folder. Models are built on demand by `load_model`."""

    path: Path
    manifest: dict
    _states: dict[int, dict] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def tasks(self) -> list[str]:
        return self.manifest["tasks"]

    @property
    def snapshots(self) -> list[int]:
        return [s["after_task"] for s in self.manifest["snapshots"]]

    @property
    def events(self) -> list[events.Event]:
        """The task-boundary events, typed (lifelong/events.py); checked at open_run."""
        fmt = self.manifest.get("events_format", 1)
        return events.load(self.manifest.get("events", []), fmt)

    def metric(self, name: str) -> list[list[float | None]]:
        return self.manifest.get("metrics", {}).get(name, [])

    def config(self):
        _, cfg_cls = models.family(self.family)
        try:
            return models.config_from_dict(cfg_cls, self.manifest["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise RunError(f"{self.name}: config does not fit {self.family}: {exc}") from None

    def log(self) -> list[dict]:
        """The records of log.jsonl (objects only; a line cut by a crash is skipped), read
        only if it is a plain file inside the run (capped); [] if there is none."""
        try:
            path = runcheck.inside(self.path, "log.jsonl", "log.jsonl")
            text = runcheck.read_capped(path, "log.jsonl", runcheck.MAX_LOG_BYTES)
        except runcheck.ManifestError:
            return []
        records = []
        for line in text.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def read_entry(self, entry: dict) -> dict[str, torch.Tensor]:
        """The tensors of a file the manifest lists (a snapshot, a stored extra, evaluation
        data), confined to the run folder, size-capped and checksum-checked."""
        what = str(entry["file"])
        try:
            path = runcheck.inside(self.path, what, f"file {what}")
            data = runcheck.read_capped(path, f"file {what}")
        except runcheck.ManifestError as exc:
            raise RunError(f"{self.name}: {exc}") from None
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise RunError(
                f"{self.name}: {entry['file']} is corrupt (checksum mismatch, {len(data)} bytes)"
            )
        try:
            return st_load(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise RunError(
                f"{self.name}: {entry['file']} is not a valid safetensors file ({exc})"
            ) from None

    def extra(self, kind: str, after_task: int) -> dict[str, torch.Tensor] | None:
        """The precomputed `kind` data stored beside snapshot `after_task` (checksum-checked),
        or None if the run has none (older runs, runs still training)."""
        entry = self.manifest.get("extras", {}).get(kind, {}).get(str(after_task))
        return None if entry is None else self.read_entry(entry)

    def state(self, after_task: int) -> dict[str, torch.Tensor]:
        """Merged state dict at snapshot `after_task` (files 0..k, later ones override)."""
        if after_task not in self._states:
            entries = [s for s in self.manifest["snapshots"] if s["after_task"] <= after_task]
            if not entries or entries[-1]["after_task"] != after_task:
                raise RunError(f"{self.name}: no snapshot after task {after_task}")
            state: dict[str, torch.Tensor] = {}
            for entry in sorted(entries, key=lambda s: s["after_task"]):
                previous = dict(state)
                state.update(self.read_entry(entry))
                for name, source in entry.get("aliases", {}).items():
                    if source not in previous:
                        raise RunError(
                            f"{self.name}: {entry['file']} aliases {name} to {source},"
                            " which the previous snapshot does not hold"
                        )
                    state[name] = previous[source]
            self._states[after_task] = state
        return self._states[after_task]

    def load_model(self, after_task: int | None = None, device: str = "cpu"):
        """The model after task k (default: the last snapshot), in eval mode, validated: every
        tensor the config and arch imply must be present with the right shape."""
        if after_task is None:
            if not self.snapshots:
                raise RunError(f"{self.name}: has no finished snapshot yet")
            after_task = self.snapshots[-1]
        entry = next((s for s in self.manifest["snapshots"] if s["after_task"] == after_task), None)
        if entry is None:
            raise RunError(f"{self.name}: no snapshot after task {after_task}")
        state = self.state(after_task)
        config = self.config()
        # Shapes first, from a build on the meta device: a manifest naming a huge network
        # (hidden=150000) is refused before a byte of it is allocated.
        try:
            expected = models.state_shapes(self.family, config, entry.get("arch"))
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as exc:
            raise RunError(f"{self.name}: cannot build {self.family}: {_first_line(exc)}") from None
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise RunError(
                f"{self.name}: snapshot after task {after_task} does not match its config: {what}"
            )
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise RunError(
                    f"{self.name}: tensor {name} has shape {tuple(state[name].shape)},"
                    f" config implies {shape}"
                )
        model = models.build(self.family, config, entry.get("arch"))
        expected = model.state_dict()
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
        model.sync_trainable()
        return model.to(device).eval()


def open_run(path: str | Path) -> Run:
    """Open a run folder and check its manifest and files (runcheck: types, confinement,
    sizes); RunError names what is wrong in one line."""
    path = Path(path)
    name = path.name
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError):  # a name the file system cannot hold (NUL, too long)
        is_dir = is_file = False
    if not is_dir:
        what = "a file" if is_file else "no such folder"
        raise RunError(f"{name[:80]}: not a run folder ({what})")
    if not (path / "manifest.json").exists() and not (path / "manifest.json").is_symlink():
        raise RunError(f"{name}: no manifest.json (not a run folder)")
    try:
        mpath = runcheck.inside(path, "manifest.json", "manifest.json")
        raw = runcheck.read_capped(mpath, "manifest.json", runcheck.MAX_MANIFEST_BYTES)
        manifest = json.loads(raw)
    except runcheck.ManifestError as exc:
        raise RunError(f"{name}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise RunError(f"{name}: manifest.json is unreadable ({_first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise RunError(f"{name}: unsupported format {str(found)[:40]!r} (expected {FORMAT})")
    try:
        runcheck.check_manifest(manifest, models.known())
        entries = [("snapshot file", e) for e in manifest["snapshots"]]
        entries += [
            ("stored file", e)
            for kind in manifest.get("extras", {}).values()
            for e in kind.values()
        ]
        entries += [("evaluation data", e) for e in manifest.get("evaldata", {}).values()]
        for what, entry in entries:
            f = runcheck.inside(path, entry["file"], f"{what} {entry['file']}")
            size = f.stat().st_size
            if size != entry.get("bytes", size):
                raise RunError(
                    f"{name}: {entry['file']} is truncated or altered"
                    f" ({size} of {entry['bytes']} bytes)"
                )
    except runcheck.ManifestError as exc:
        raise RunError(f"{name}: {exc}") from None
    run = Run(path, manifest)
    run.config()  # typed against the family's config: a bad value is refused at the door
    return run


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def find_runs(*roots: str | Path) -> list[Path]:
    """Run folders (those with a manifest.json) directly under each root, sorted by name."""
    found = []
    for root in roots:
        root = Path(root)
        if root.is_dir():
            found += sorted(
                p
                for p in root.iterdir()
                if not p.name.startswith(".") and (p / "manifest.json").is_file()
            )  # dot-folders are runs being built by `pretrain`
    return found


def stored_eval(run) -> dict:
    """{name: value} of every metric `python -m lifelong eval --write` stored in the run's
    manifest (manifest["eval"]["metrics"][name]["value"]), for the app and the summaries."""
    return {n: e["value"] for n, e in run.manifest.get("eval", {}).get("metrics", {}).items()}
