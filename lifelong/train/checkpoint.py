"""Mid-task checkpoints: resume a run from the last finished epoch, not only the last task.

A checkpoint is one safetensors file written by the project itself (never pickled) holding
everything the trainer needs to continue exactly where it stopped:

- `model/<name>`: the model's state dict (weights and buffers) at the end of an epoch;
- `optim/<optimizer>/<param index>/<key>`: the tensor state of every optimizer that
  `make_optimizers()` returned, whatever its keys (Adam: step, exp_avg, exp_avg_sq);
- `rng/torch` (the CPU generator, uint8), `rng/data` (the data-order generator), and
  `rng/cuda` when training on CUDA;
- JSON metadata (one sorted key): family, config, arch(), tasks, seed, training options, the
  position (task, epoch, step), the optimizers' param groups and non-tensor state, the model's
  plain Python attributes (e.g. CPVAE's phase and epoch counter), the run's events so far and
  the digests of the tensors already stored in snapshots.

Files live in RUN/.checkpoints/ (a hidden folder, so the run's public listing, `export_zip`
and the upload validator never see them) as `ckpt-tTT-eEEE-<sha256[:16]>.safetensors`: the
name carries the checksum of the whole file, so a corrupt or cut file is recognised without
any index. Files are written to a temporary name and renamed; the newest two are kept, so a
corrupt newest one falls back to the previous one, then to the last snapshot. When the run
finishes these files are removed, and the folder with them if nothing else is in it: only
files whose names the trainer makes are ever deleted (a run folder may hold the user's files).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from lifelong import runs

FORMAT = "lifelong-checkpoint/1"
FOLDER = ".checkpoints"
KEEP = 2
NAME = re.compile(r"^ckpt-t(\d+)-e(\d+)-([0-9a-f]{16})\.safetensors$")
# runs.atomic_write's temporary `.NAME.tmpPID` of a file the trainer writes (manifest.json,
# log.jsonl, task-NN / map-NN / evaldata-NN / other .safetensors, checkpoints): what a kill
# leaves behind. Never a dot-file's (the app's `.job.json` is written the same way).
TEMP = re.compile(r"^\.(?!\.)[\w.-]+\.(safetensors|json|jsonl)\.tmp\d+$")
_MODULE_ATTRS = set(vars(nn.Module())) | {"config"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why (one line)."""


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor]

    @property
    def task(self) -> int:
        return int(self.meta["task"])

    @property
    def epoch(self) -> int:
        """Epochs of the task already done (training goes on with this epoch index)."""
        return int(self.meta["epoch"])

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model/")}


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / FOLDER


def plain_attrs(model: nn.Module) -> dict:
    """The model's own JSON-able Python attributes (not modules, parameters or buffers): the
    bits of training state a family keeps outside its state dict."""
    out = {}
    for key, value in vars(model).items():
        if key in _MODULE_ATTRS:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def _optimizer_payload(name: str, opt: torch.optim.Optimizer, tensors: dict) -> dict:
    sd = opt.state_dict()
    groups = []
    for g in sd["param_groups"]:
        group = {}
        for k, v in g.items():
            v = list(v) if isinstance(v, tuple) else v
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                raise CheckpointError(f"optimizer {name}: option {k} is not JSON-able") from None
            group[k] = v
        groups.append(group)
    scalars: dict[str, dict] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim/{name}/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    shapes = [list(p.shape) for g in opt.param_groups for p in g["params"]]
    return {"param_groups": groups, "scalars": scalars, "shapes": shapes}


def load_optimizers(optimizers: dict, ckpt: Checkpoint, keep_lr: bool = False) -> None:
    """Restore every optimizer's state and param groups. keep_lr: the learning rates of the
    fresh optimizers win (the user lowered lr on --resume)."""
    saved = ckpt.meta["optimizers"]
    if sorted(saved) != sorted(optimizers):
        raise CheckpointError(
            f"optimizers {sorted(saved)} in the checkpoint, {sorted(optimizers)} in the model"
        )
    for name, opt in optimizers.items():
        payload = saved[name]
        shapes = [list(p.shape) for g in opt.param_groups for p in g["params"]]
        if shapes != payload["shapes"]:
            raise CheckpointError(f"optimizer {name}: its parameters do not match the model")
        state: dict[int, dict] = {}
        prefix = f"optim/{name}/"
        for key, value in ckpt.tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix) :].split("/", 1)
                state.setdefault(int(idx), {})[field] = value.clone()
        for idx, values in payload["scalars"].items():
            state.setdefault(int(idx), {}).update(values)
        groups = []
        for fresh, group in zip(opt.param_groups, payload["param_groups"], strict=True):
            g = {k: tuple(v) if isinstance(fresh.get(k), tuple) else v for k, v in group.items()}
            if keep_lr:
                g["lr"] = fresh["lr"]
            groups.append(g)
        opt.load_state_dict({"state": state, "param_groups": groups})


def non_finite(model: nn.Module, optimizers: dict) -> str | None:
    """The name of the first non-finite float tensor in the model or an optimizer's state."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    for oname, opt in optimizers.items():
        for state in opt.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point():
                    if not bool(torch.isfinite(value).all()):
                        return f"{oname} optimizer {key}"
    return None


def save(
    run_dir: Path,
    model,
    optimizers: dict,
    position: dict,
    run_info: dict,
    events: list,
    stored: dict,
    data_gen: torch.Generator,
) -> Path:
    """Write a checkpoint after `position["epoch"]` epochs of task `position["task"]`, then
    drop all but the newest KEEP checkpoints. Returns its path."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_meta = {name: _optimizer_payload(name, opt, tensors) for name, opt in optimizers.items()}
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/data"] = data_gen.get_state()
    if model.device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(model.device)
    meta = {
        "format": FORMAT,
        **run_info,
        "family": model.family,
        "config": model.config_dict(),
        "arch": model.arch(),
        **position,
        "optimizers": opt_meta,
        "attrs": plain_attrs(model),
        "events": events,
        "stored": stored,
    }
    data = st_save(tensors, metadata={"lifelong-checkpoint": json.dumps(meta, sort_keys=True)})
    digest = hashlib.sha256(data).hexdigest()[:16]
    d = folder(run_dir)
    if d.is_symlink() or (d.exists() and not d.is_dir()):
        raise CheckpointError(f"{d} is not a folder of the run's own; remove it and --resume")
    d.mkdir(exist_ok=True)
    path = d / f"ckpt-t{position['task']:02d}-e{position['epoch']:04d}-{digest}.safetensors"
    runs.atomic_write(path, data)
    for old in listed(run_dir)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def listed(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, newest (task, epoch) first (plain files with the names
    `save` makes; a `.checkpoints` that is a link is not the run's own and is ignored)."""
    d = folder(run_dir)
    if d.is_symlink() or not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = NAME.match(p.name)
        if m and p.is_file() and not p.is_symlink():
            found.append(((int(m[1]), int(m[2])), p))
    return [p for _, p in sorted(found, key=lambda f: f[0], reverse=True)]


def read(path: Path) -> Checkpoint:
    """Read and verify one checkpoint file (checksum in its name, safetensors, metadata)."""
    m = NAME.match(path.name)
    if m is None:
        raise CheckpointError(f"{path.name}: not a checkpoint name")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path.name}: unreadable ({exc})") from None
    if hashlib.sha256(data).hexdigest()[:16] != m[3]:
        raise CheckpointError(f"{path.name}: checksum mismatch ({len(data)} bytes)")
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"]["lifelong-checkpoint"])
    except (SafetensorError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name}: not a valid checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: unsupported format {meta.get('format')!r}")
    return Checkpoint(path, meta, tensors)


def latest(run_dir: Path, expect: dict, log=None) -> Checkpoint | None:
    """The newest valid checkpoint whose metadata matches `expect` (family, tasks, seed, task,
    ...); invalid ones are reported through `log` and skipped (the previous one is tried)."""
    for path in listed(run_dir):
        try:
            ckpt = read(path)
        except CheckpointError as exc:
            if log:
                log(f"skipping checkpoint {exc}")
            continue
        wrong = [k for k, v in expect.items() if ckpt.meta.get(k) != v]
        if wrong:
            if log:
                log(f"skipping checkpoint {path.name}: written for another {', '.join(wrong)}")
            continue
        return ckpt
    return None


def remove_all(run_dir: Path) -> None:
    """Delete the run's checkpoints and their temporaries, then the folder if that left it
    empty; anything else in it (not ours) stays where it is."""
    for p in listed(run_dir):
        p.unlink(missing_ok=True)
    d = folder(run_dir)
    if d.is_symlink() or not d.is_dir():
        return
    _remove_temporaries(d)
    try:
        d.rmdir()
    except OSError:
        pass  # not empty: the other files are not the trainer's to delete


def remove_before(run_dir: Path, task: int) -> None:
    """Drop checkpoints of tasks < `task` (superseded by that task's snapshot)."""
    for p in listed(run_dir):
        if int(NAME.match(p.name)[1]) < task:
            p.unlink(missing_ok=True)


def clean_partial(run_dir: Path) -> None:
    """Remove temporary files a kill left behind (atomic_write's `.NAME.tmpPID`, NAME a file
    the trainer writes)."""
    for d in (Path(run_dir), folder(run_dir)):
        if d.is_dir() and not d.is_symlink():
            _remove_temporaries(d)


def _remove_temporaries(d: Path) -> None:
    for p in d.iterdir():
        if TEMP.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
