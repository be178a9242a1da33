"""The lifelong trainer: tasks in order, before_task/after_task hooks, a snapshot and a row of
the forgetting matrix after every task, resumable from the last complete snapshot.

A family may group tasks into phases (`training_phases`: the joint baseline and MVAE train on
the union of their tasks); a phase is then treated as one task whose index is its last task's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lifelong import data as ldata
from lifelong import models, runs
from lifelong.explore import latentmap
from lifelong.train.callbacks import Callback, JSONLLog, Progress, prune_log
from lifelong.train.evaluate import evaluate


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, mismatched resume, ...); one-line message."""


@dataclass
class TrainArgs:
    model: str
    tasks: list[str]
    out: Path
    epochs: int = 3
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    overrides: dict = field(default_factory=dict)  # --set key=value, already typed
    resume: bool = False
    store_dtype: str = "float32"  # "float16" halves snapshots (the pretrained zoo)
    threads: int | None = None
    eval_samples: int = 512
    map_points: int = latentmap.MAP_POINTS  # 0: store no default latent map
    log_every: int = 10


def resolve_device(name: str) -> torch.device:
    """auto -> CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available here (try auto or cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def parse_overrides(family: str, pairs: list[str]) -> dict:
    """['latent_dim=8', 'dynamic=true'] -> typed dict, checked against the family's config."""
    defaults = dict(models.options(family))
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        if key not in defaults:
            raise ValueError(f"unknown option {key!r} for {family}; valid: {', '.join(defaults)}")
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
            return float(raw)
        if isinstance(default, tuple):
            return tuple(int(v) for v in raw.split("x"))
        return raw
    except ValueError:
        raise ValueError(f"option {key}: {raw!r} is not a valid {type(default).__name__}") from None


def build_config(family: str, tasks: list[str], overrides: dict):
    """The family's config for this sequence: image shape and task count from the data."""
    _, cfg_cls = models.family(family)
    shapes = {ldata.image_shape(t) for t in tasks}
    if len(shapes) > 1:
        raise ValueError(f"tasks have different image shapes {sorted(shapes)}; use size= / rgb")
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    base = {"image_shape": shapes.pop(), "n_tasks": len(tasks)}
    cfg = cfg_cls(**{k: v for k, v in base.items() if k in fields}, **overrides)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def train(args: TrainArgs, callbacks: list[Callback] | None = None) -> Path:
    """Train `args.model` over `args.tasks` into the run folder `args.out`; returns its path."""
    torch.set_flush_denormal(True)  # mixture losses drift into denormals (DESIGN.md)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    device = resolve_device(args.device)
    tasks = ldata.parse_tasks(",".join(args.tasks))
    # Load every task before touching the disk, so bad data writes nothing.
    train_sets = [ldata.load_task(t, "train", args.seed) for t in tasks]
    test_sets = [ldata.load_task(t, "test", args.seed) for t in tasks]

    if args.resume:
        model, manifest, stored, start = _resume(args, out, tasks, device)
    else:
        if (out / "manifest.json").exists():
            raise TrainingError(f"{out} already holds a run; use --resume or another --out")
        config = build_config(args.model, tasks, args.overrides)
        torch.manual_seed(args.seed)  # the initial weights are part of the run's seed
        model = models.build(args.model, config).to(device)
        train_args = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "overrides": args.overrides,
            "store_dtype": args.store_dtype,
        }
        manifest = runs.new_manifest(
            args.model, model.config_dict(), tasks, args.seed, str(device), train_args
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "log.jsonl").write_text("")
        runs.write_manifest(out, manifest)
        stored, start = {}, 0

    cbs = [
        JSONLLog(out / "log.jsonl", args.log_every),
        *([Progress()] if callbacks is None else callbacks),
    ]
    for cb in cbs:
        cb.on_start({"run": str(out), "tasks": tasks, "start_task": start})
    phases = model.training_phases(len(tasks))
    for p, phase in enumerate(phases):
        t = phase[-1]
        if t < start:
            continue
        data = ldata.join_tasks([train_sets[i] for i in phase], phase)
        _train_task(args, model, manifest, t, tasks, data, device, cbs)
        manifest["events"] += _tag(model.after_task(t, data), t)
        model.eval()
        row = evaluate(model, test_sets, args.eval_samples)
        if args.map_points:  # the latent map's first paint reads this instead of fitting
            points = latentmap.default_map(model, test_sets, args.map_points)
            runs.save_extra(out, manifest, "map", t, points)
        model.train()
        if "routing" in row:
            manifest["events"].append(
                {"type": "routing", "task": t, "after_task": t, "fractions": row.pop("routing")}
            )
        for name, values in row.items():
            manifest["metrics"].setdefault(name, [])
            manifest["metrics"][name] = manifest["metrics"][name][:p] + [values]
        runs.save_snapshot(out, manifest, model, t, stored, args.store_dtype)
        runs.write_manifest(out, manifest)
        for cb in cbs:
            cb.on_task_end({"task": t, "n_tasks": len(tasks), **{k: v for k, v in row.items()}})
    manifest["status"] = "complete"
    runs.write_manifest(out, manifest)
    for cb in cbs:
        cb.on_end({"run": str(out)})
    return out


def _tag(events: list[dict], task: int) -> list[dict]:
    return [{"task": task, **e} for e in events]


def _train_task(args, model, manifest, t, tasks, data, device, cbs) -> None:
    torch.manual_seed(args.seed * 1000 + t)  # per-task seed: a resumed run redoes task t exactly
    manifest["events"] += _tag(model.before_task(t, data), t)
    runs.write_manifest(args.out, manifest)
    optimizers = model.make_optimizers()
    n = len(data)
    steps = max(1, math.ceil(n / args.batch_size))
    total = steps * args.epochs
    gen = torch.Generator().manual_seed(args.seed * 1000 + t)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        t0 = time.time()
        for i in range(steps):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            batch = {
                k: v[idx].to(device) for k, v in (("x", data.x), ("y", data.y), ("task", data.task))
            }
            model.progress = step / total
            terms = model.train_step(batch, t, optimizers)
            loss = terms["total"]
            if not torch.isfinite(loss):
                manifest["status"] = f"failed: non-finite loss at task {t} epoch {epoch} step {i}"
                runs.write_manifest(args.out, manifest)
                named = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                raise TrainingError(
                    f"loss became {float(loss.detach())} at task {t}, epoch {epoch}, step {i}"
                    f" ({named});"
                    f" snapshots up to task {t - 1} are kept; lower the learning rate"
                    " (--set lr=...) and --resume"
                )
            values = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            step += 1
            info = {
                "task": t,
                "n_tasks": len(tasks),
                "epoch": epoch,
                "step": step,
                "total_steps": total,
                "_new_task": step == 1,
                **values,
            }
            for cb in cbs:
                cb.on_step(info)
        epoch_info = {
            "task": t,
            "epoch": epoch,
            "step": step,
            "seconds": time.time() - t0,
            "images_per_s": n / max(time.time() - t0, 1e-9),
            **{k: v / steps for k, v in sums.items()},
            **model.epoch_stats(),
        }
        for cb in cbs:
            cb.on_epoch(epoch_info)


def _resume(args, out: Path, tasks: list[str], device):
    run = runs.open_run(out)
    if run.family != args.model or run.tasks != tasks:
        raise TrainingError(
            f"{out} holds {run.family} on {','.join(run.tasks)}; --resume needs"
            " the same --model and --tasks"
        )
    snaps = run.snapshots
    start = (snaps[-1] + 1) if snaps else 0  # the first task whose phase is not done
    manifest = run.manifest
    if snaps:
        model = run.load_model(snaps[-1], str(device)).train()
        # Tensors equal to what was loaded (frozen experts) are not written again.
        stored = {k: runs.tensor_digest(v) for k, v in model.state_dict().items()}
    else:
        config = models.config_from_dict(models.family(run.family)[1], run.manifest["config"])
        model, stored = models.build(run.family, config).to(device), {}
    # Forget whatever the interrupted phase left behind: events, metrics rows, log lines.
    manifest["events"] = [e for e in manifest["events"] if e.get("task", 0) < start]
    manifest["metrics"] = {k: v[: len(snaps)] for k, v in manifest["metrics"].items()}
    manifest["status"] = "running"
    prune_log(out / "log.jsonl", start)
    runs.write_manifest(out, manifest)
    return model, manifest, stored, start


def read_log(path: Path) -> list[dict]:
    """Records of a run's log.jsonl (skipping a line cut by a crash)."""
    records = []
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records
