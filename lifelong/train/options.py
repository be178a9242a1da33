"""Checks of everything a user hands the trainer, before any data is loaded or any file is
written: the training options, the device, `--set` overrides and the config they make (sizes
checked on the meta device, so a model too big for this machine is refused without allocating
it), and the `--out` folder (a file, or a folder of the user's that is not a run, is refused:
the trainer never writes into, or deletes from, a folder it does not own). Each failure is one
line: TrainingError for the options and the folder, ValueError for overrides and configs."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import torch

from lifelong import data as ldata
from lifelong import models
from lifelong.train.checkpoint import TEMP
from lifelong.train.errors import TrainingError

SEED_MAX = 2**32 - 1
# What may already sit in a fresh --out folder: the app's job record and log (jobs.py writes
# them before it starts the trainer) and atomic_write's temporaries of a start that was killed
# before its first manifest was in place.
_JOB_FILES = re.compile(r"^(\.job\.json|\.job\.log|\.\.job\.json\.tmp\d+)$")
# Config fields that are sizes of networks or counts of samples: at least 1.
_SIZE = re.compile(r"^(.*_dim|channels|hidden|n_components|n_classes|.*_samples|.*_batch.*)$")
_DERIVED = ("image_shape", "n_tasks")  # set from the tasks, never by --set


def check_args(args) -> None:
    """Refuse impossible training options (TrainArgs) in one line; None means "the default"
    (or, on --resume, the run's own value)."""
    for name, flag, low in (
        ("epochs", "--epochs", 1),
        ("batch_size", "--batch-size", 1),
        ("threads", "--threads", 1),
        ("checkpoint_every", "--checkpoint-every", 0),
        ("seed", "--seed", 0),
    ):
        value = getattr(args, name)
        if value is None:
            if name == "checkpoint_every":
                raise TrainingError("--checkpoint-every must be 0 (off) or a number of epochs")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TrainingError(f"{flag} must be a whole number >= {low}, not {value!r}")
    if args.seed is not None and args.seed > SEED_MAX:
        raise TrainingError(f"--seed must be at most {SEED_MAX}, not {args.seed}")
    if args.amp not in ("none", "bf16"):
        raise TrainingError(f"--amp {args.amp!r}: valid are none, bf16")
    if args.store_dtype not in (None, "float32", "float16"):
        raise TrainingError(f"--store-dtype {args.store_dtype!r}: valid are float32, float16")
    if not args.tasks:
        raise TrainingError("no tasks given; write e.g. --tasks digits:classes=0-4,glyphs")


def resolve_device(name: str) -> torch.device:
    """auto -> CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"unknown device {name!r}; valid: auto, cpu, cuda, mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available here (try auto or cpu)")
    if name == "mps" and not _mps_available():
        raise TrainingError("--device mps: no MPS device is available here (try auto or cpu)")
    return torch.device(name)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def parse_overrides(family: str, pairs: list[str]) -> dict:
    """['latent_dim=8', 'dynamic=true'] -> typed dict, checked against the family's config."""
    defaults = dict(models.options(family))
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        if key in _DERIVED:
            raise ValueError(f"option {key} is set from the tasks, not with --set")
        if key not in defaults:
            valid = ", ".join(k for k in defaults if k not in _DERIVED)
            raise ValueError(f"unknown option {key!r} for {family}; valid: {valid}")
        out[key] = _coerce(key, raw, defaults[key])
    return out


def _coerce(key: str, raw: str, default):
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if math.isnan(value):
                raise ValueError
            return value
        if isinstance(default, tuple):
            return tuple(int(v) for v in raw.split("x"))
        return raw
    except ValueError:
        raise ValueError(f"option {key}: {raw!r} is not a valid {type(default).__name__}") from None


def check_config(family: str, cfg) -> None:
    """Sizes and counts >= 1, a positive finite learning rate, the family's own `validate`,
    and a model that fits this machine (built on the meta device: nothing is allocated)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"option {f.name} is NaN")
        if f.name == "lr" and not 0 < value < math.inf:
            raise ValueError(f"option lr must be a positive number, not {value}")
        if isinstance(value, int) and _SIZE.match(f.name) and value < 1:
            raise ValueError(f"option {f.name} must be at least 1, not {value}")
    if hasattr(cfg, "validate"):
        cfg.validate()
    try:
        models.state_shapes(family, cfg)
    except (RuntimeError, OverflowError, TypeError) as exc:  # sizes torch cannot even describe
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{family} cannot be built with these options ({first})") from None


def build_config(family: str, tasks: list[str], overrides: dict):
    """The family's config for this sequence (image shape and task count from the data),
    checked by check_config."""
    _, cfg_cls = models.family(family)
    shapes = {ldata.image_shape(t) for t in tasks}
    if len(shapes) > 1:
        raise ValueError(f"tasks have different image shapes {sorted(shapes)}; use size= / rgb")
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    base = {"image_shape": shapes.pop(), "n_tasks": len(tasks)}
    for key in set(overrides) & set(base):
        raise ValueError(f"option {key} is set from the tasks, not with --set")
    cfg = cfg_cls(**{k: v for k, v in base.items() if k in fields}, **overrides)
    check_config(family, cfg)
    return cfg


def check_out(out: Path, resume: bool) -> None:
    """--out must be a folder the trainer may write: absent, empty (job files aside) or, with
    --resume, a run (resume.prepare checks the rest). A file, or a folder of the user's, is
    refused: nothing in it is touched."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file, not a folder")
    if resume or not out.is_dir():
        return
    if (out / "manifest.json").exists():
        raise TrainingError(f"{out} already holds a run; use --resume or another --out")
    try:
        foreign = sorted(p.name for p in out.iterdir() if not _JOB_FILES.match(p.name))
    except OSError as exc:
        raise TrainingError(f"--out {out}: cannot read it ({exc.strerror})") from None
    foreign = [n for n in foreign if not TEMP.match(n)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise TrainingError(
            f"--out {out} is a folder that is not a run ({len(foreign)} entries: {shown});"
            " give a new or empty folder"
        )


def dry_run(model, x: torch.Tensor, tasks: list[str]) -> None:
    """Reconstruct two training images before anything is written, so that networks that
    cannot take these images fail in one line with the folder untouched. The RNG streams and
    the model's mode are left as they were (the run stays the same seeded run)."""
    devices = [x.device] if x.device.type == "cuda" else []
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            model.reconstruct(x)
    except (RuntimeError, ValueError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        shape = "x".join(map(str, x.shape[1:]))
        raise TrainingError(
            f"{model.family} cannot train on {tasks[0]} (images {shape}): {first}"
        ) from None
    finally:
        model.train(was_training)
