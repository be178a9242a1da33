"""--resume: continue an interrupted run from its newest valid checkpoint (mid-task) or, failing
that, its last snapshot (or its start). A run that cannot be resumed raises TrainingError with
one line saying why: no manifest, finished already, another model, tasks or options."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lifelong import models, runs
from lifelong.train import checkpoint
from lifelong.train.callbacks import prune_log
from lifelong.train.errors import TrainingError

DEFAULTS = {"epochs": 3, "batch_size": 128, "store_dtype": "float32"}
FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "store_dtype": "--store-dtype"}


@dataclass
class Resumed:
    model: models.GenerativeModel
    manifest: dict
    stored: dict
    start: int  # the first task whose phase is not done
    ckpt: checkpoint.Checkpoint | None = None
    lr_changed: dict = field(default_factory=dict)


def _log(msg: str) -> None:
    print(f"resume: {msg}", file=sys.stderr)


def check_options(args, out: Path, manifest: dict, tasks: list[str]) -> dict:
    """Fill the options left out (None) from the manifest and refuse contradictions. Only the
    learning rate (lr* options) may change on --resume (the advice after a NaN loss); returns
    those changes, already applied to manifest["config"]."""
    n = len(manifest.get("snapshots", []))
    if manifest.get("status") == "complete":
        raise TrainingError(
            f"cannot resume {out}: it finished already ({n} snapshots); use another --out"
        )
    if manifest["family"] != args.model or manifest["tasks"] != tasks:
        raise TrainingError(
            f"cannot resume {out}: it holds {manifest['family']} on {','.join(manifest['tasks'])};"
            " --resume needs the same --model and --tasks"
        )
    train = manifest.setdefault("train", {})
    for key, flag in FLAGS.items():
        have, given = train.get(key), getattr(args, key)
        if given is None:
            setattr(args, key, have if have is not None else DEFAULTS[key])
        elif have is not None and given != have:
            raise TrainingError(
                f"cannot resume {out}: it was started with {flag} {have}, not {given}"
            )
    if args.seed is None:
        args.seed = manifest.get("seed", 0)
    elif args.seed != manifest.get("seed", args.seed):
        raise TrainingError(
            f"cannot resume {out}: it was started with --seed {manifest['seed']}, not {args.seed}"
        )
    changed = {}
    config = manifest["config"]
    for key, value in args.overrides.items():
        v = list(value) if isinstance(value, tuple) else value
        if config.get(key) == v:
            continue
        if not key.startswith("lr"):
            raise TrainingError(
                f"cannot resume {out}: it was trained with {key}={config.get(key)}, not {v}"
                " (only the learning rate may change on --resume)"
            )
        changed[key] = v
    if changed:
        config.update(changed)
        train["overrides"] = {**train.get("overrides", {}), **changed}
        _log(f"learning rate changed: {changed}")
    return changed


def prepare(args, out: Path, tasks: list[str], device, write: bool, pick=False) -> Resumed:
    """Open the run and rebuild the state training goes on from. write=False (ranks > 0 under
    torchrun) only reads; `pick` is then rank 0's chosen checkpoint file name (or None)."""
    if not (out / "manifest.json").is_file():
        raise TrainingError(
            f"cannot resume {out}: no manifest.json there (not a run, or it never started);"
            " train without --resume"
        )
    try:
        run = runs.open_run(out)
    except runs.RunError as exc:
        raise TrainingError(f"cannot resume: {exc}") from None
    manifest = run.manifest
    lr_changed = check_options(args, out, manifest, tasks)
    if write:
        checkpoint.clean_partial(out)
    snaps = run.snapshots
    start = (snaps[-1] + 1) if snaps else 0
    _, cfg_cls = models.family(run.family)
    try:
        config = models.config_from_dict(cfg_cls, manifest["config"])
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"cannot resume {out}: its config does not fit: {exc}") from None
    phase_ends = [p[-1] for p in models.build(run.family, config).training_phases(len(tasks))]
    todo = [t for t in phase_ends if t >= start]
    if not todo:
        raise TrainingError(f"cannot resume {out}: every task has its snapshot already")
    next_t = todo[0]
    expect = {
        "family": run.family,
        "tasks": tasks,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "task": next_t,
    }
    ckpt = None
    if write:  # checkpoints of tasks that have their snapshot now are stale
        checkpoint.remove_before(out, start)
    if pick is False:
        ckpt = checkpoint.latest(out, expect, _log if write else None)
    elif pick is not None:
        ckpt = checkpoint.read(checkpoint.folder(out) / pick)
    model = None
    if ckpt is not None:
        try:
            model = _from_checkpoint(run.family, config, ckpt)
        except checkpoint.CheckpointError as exc:
            if not write:
                raise TrainingError(f"cannot resume {out}: {exc}") from None
            _log(f"skipping checkpoint {exc}; going back to the last snapshot")
            ckpt = None
    if ckpt is not None:
        stored = dict(ckpt.meta["stored"])
        manifest["events"] = ckpt.meta["events"]
        where = f"checkpoint after epoch {ckpt.epoch} of task {ckpt.task}"
    elif snaps:
        try:
            model = run.load_model(snaps[-1], "cpu")
        except runs.RunError as exc:
            raise TrainingError(f"cannot resume: {exc}") from None
        # Tensors equal to what was loaded (frozen experts) are not written again.
        stored = {k: runs.tensor_digest(v) for k, v in model.state_dict().items()}
        where = f"snapshot after task {snaps[-1]}"
    else:
        torch.manual_seed(args.seed)  # the initial weights are part of the run's seed
        model, stored = models.build(run.family, config), {}
        where = "start"
    model = model.to(device).train()
    if write:
        _log(f"{out}: going on from the {where}")
        # Forget whatever the interrupted phase left behind: events, metrics rows, log lines.
        if ckpt is None:
            manifest["events"] = [e for e in manifest["events"] if e.get("task", 0) < start]
        manifest["metrics"] = {k: v[: len(snaps)] for k, v in manifest["metrics"].items()}
        manifest["status"] = "running"
        manifest.pop("checkpoint", None)
        prune_log(out / "log.jsonl", next_t if ckpt else start, ckpt.epoch if ckpt else 0)
        runs.write_manifest(out, manifest)
    return Resumed(model, manifest, stored, start, ckpt, lr_changed)


def _from_checkpoint(family: str, config, ckpt: checkpoint.Checkpoint):
    try:
        model = models.build(family, config, ckpt.meta["arch"])
    except (ValueError, TypeError, KeyError) as exc:
        raise checkpoint.CheckpointError(f"{ckpt.path.name}: cannot rebuild ({exc})") from None
    state = ckpt.model_state()
    expected = model.state_dict()
    if set(state) != set(expected) or any(
        tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()
    ):
        raise checkpoint.CheckpointError(f"{ckpt.path.name}: tensors do not match the model")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    for key, value in ckpt.meta.get("attrs", {}).items():
        setattr(model, key, value)
    if hasattr(model, "_sync_requires_grad"):
        model._sync_requires_grad()
    return model
