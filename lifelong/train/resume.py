"""--resume: continue an interrupted run from its newest valid checkpoint (mid-task) or, failing
that, its last snapshot (or its start). A run stopped after its last snapshot but before it was
marked complete (a kill, a full disk at the last write) is finished: the trainer then trains
nothing and only does the end-of-run work. A run that cannot be resumed raises TrainingError
with one line saying why: no manifest, finished already, another model, tasks or options."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lifelong import events, models, runs
from lifelong.train import checkpoint, options
from lifelong.train.callbacks import log_line, prune_log
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
        options.check_config(run.family, config)  # sizes, before anything is allocated
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"cannot resume {out}: its config does not fit: {exc}") from None
    with torch.device("meta"):  # the phases only: no weights needed
        phases = models.build(run.family, config).training_phases(len(tasks))
    todo = [p[-1] for p in phases if p[-1] >= start]
    # No task left: the run was stopped between its last snapshot and "complete"; it is
    # finished now (the trainer skips every phase and does the end-of-run work).
    next_t = todo[0] if todo else None
    ckpt = None
    if write:  # checkpoints of tasks that have their snapshot now are stale
        checkpoint.remove_before(out, start)
    if next_t is None:
        pass
    elif pick is False:
        expect = {
            "family": run.family,
            "tasks": tasks,
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "task": next_t,
        }
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
    try:  # events of an older run format are rewritten in this one before new ones join them
        fmt = manifest.get("events_format", 1)
        manifest["events"] = [e.to_dict() for e in events.load(manifest["events"], fmt)]
        manifest["events_format"] = events.FORMAT
    except ValueError as exc:
        raise TrainingError(f"cannot resume {out}: {exc}") from None
    if write:
        what = "every task has its snapshot; finishing the run" if next_t is None else None
        _log(f"{out}: {what or 'going on from the ' + where}")
        # Forget whatever the interrupted phase left behind: events, metrics rows, log lines.
        if ckpt is None:
            manifest["events"] = [e for e in manifest["events"] if e.get("task", 0) < start]
        manifest["metrics"] = {k: v[: len(snaps)] for k, v in manifest["metrics"].items()}
        manifest["status"] = "running"
        manifest.pop("checkpoint", None)
        prune_log(out / "log.jsonl", next_t if ckpt else start, ckpt.epoch if ckpt else 0)
        if next_t is None:
            _restore_task_record(out / "log.jsonl", manifest, snaps[-1])
        runs.write_manifest(out, manifest)
    return Resumed(model, manifest, stored, start, ckpt, lr_changed)


def mark_interrupted(out: Path) -> None:
    """Set the manifest's status to "interrupted" (the run stays resumable with --resume).
    Best effort: on a full disk it stays "running", which --resume accepts as well."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        if isinstance(manifest, dict) and manifest.get("status") == "running":
            manifest["status"] = "interrupted"
            runs.write_manifest(out, manifest)
    except (OSError, ValueError):
        pass


def _restore_task_record(log: Path, manifest: dict, t: int) -> None:
    """Append the log's record of the last task's end if the stop came before it was written
    (the run's snapshot, manifest and metrics were already in place): the same fields the
    trainer's JSONLLog writes, from the metrics row stored for that snapshot."""
    try:
        lines = log.read_text().splitlines() if log.is_file() else []
    except (OSError, UnicodeDecodeError):
        return  # not a log of ours to extend
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("kind") == "task" and rec.get("task") == t:
            return
    n = len(manifest["snapshots"])
    row = {k: v[n - 1] for k, v in manifest.get("metrics", {}).items() if len(v) >= n}
    info = {"task": t, "n_tasks": len(manifest["tasks"]), **row}
    with open(log, "a") as fh:
        fh.write(log_line({"kind": "task", "time": time.time(), **info}))


def _from_checkpoint(family: str, config, ckpt: checkpoint.Checkpoint):
    """The model a checkpoint holds; its shapes are compared with a build on the meta device
    first, so a checkpoint that does not match the run's config costs no allocation."""
    state = ckpt.model_state()
    try:
        shapes = models.state_shapes(family, config, ckpt.meta["arch"])
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise checkpoint.CheckpointError(f"{ckpt.path.name}: cannot rebuild ({exc})") from None
    if set(state) != set(shapes) or any(tuple(state[k].shape) != s for k, s in shapes.items()):
        raise checkpoint.CheckpointError(f"{ckpt.path.name}: tensors do not match the model")
    model = models.build(family, config, ckpt.meta["arch"])
    expected = model.state_dict()
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    for key, value in ckpt.meta.get("attrs", {}).items():
        setattr(model, key, value)
    model.sync_trainable()
    return model
