"""The lifelong trainer: tasks in order, before_task/after_task hooks, a snapshot and a row of
the forgetting matrix after every task, a checkpoint every N epochs (checkpoint.py), resumable
from the newest complete checkpoint or snapshot (resume.py), optional bf16 autocast, and
data-parallel under torchrun (ddp.py).

A family may group tasks into phases (`training_phases`: the joint baseline and MVAE train on
the union of their tasks); a phase is then treated as one task whose index is its last task's.

Reproducibility: on CPU, a seeded run gives the same snapshot bytes every time, and a run
resumed from a checkpoint gives the same weights as an uninterrupted one (the checkpoint holds
the CPU generator and the data-order generator). `--amp bf16` runs each train_step under
torch.autocast(bfloat16): on CUDA (where it pays) and on CPU too (slower there, but it lets a
CPU-only machine check a configuration before it goes to a GPU); MPS is refused.

Bad input changes nothing: options, the model's size and the --out folder are checked before
any data is loaded or any file written (options.py). A failed write (a full disk) ends in one
line, leaving a run that --resume finishes once the cause is gone (errors.write_error).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lifelong import data as ldata
from lifelong import embedding, evaldata, evaluation, events, models, runs
from lifelong.train import checkpoint, ddp, options, resume
from lifelong.train.callbacks import Callback, JSONLLog, Progress
from lifelong.train.errors import TrainingError, write_error
from lifelong.train.evaluate import evaluate

# Kept importable from here (jobs.py, bench/, tests): they live in options.py.
from lifelong.train.options import build_config, parse_overrides, resolve_device

__all__ = [
    "TrainArgs",
    "TrainingError",
    "build_config",
    "parse_overrides",
    "resolve_device",
    "train",
]


@dataclass
class TrainArgs:
    model: str
    tasks: list[str]
    out: Path
    epochs: int | None = 3  # None: the run's own on --resume (3 for a new run)
    batch_size: int | None = 128
    seed: int | None = 0
    device: str = "auto"
    overrides: dict = field(default_factory=dict)  # --set key=value, already typed
    resume: bool = False
    store_dtype: str | None = "float32"  # "float16" halves snapshots (the pretrained zoo)
    threads: int | None = None
    eval_samples: int = 512
    map_points: int = embedding.MAP_POINTS  # 0: store no default latent map
    eval_images: int = evaldata.EVAL_IMAGES  # test images per task carried in the run
    log_every: int = 10
    checkpoint_every: int = 1  # epochs between mid-task checkpoints; 0: snapshots only
    amp: str = "none"  # "bf16": train steps under torch.autocast(bfloat16)


@dataclass
class _Ctx:
    """What one training process shares between its tasks."""

    args: TrainArgs
    out: Path
    dist: ddp.Dist
    device: torch.device
    cbs: list
    stored: dict
    lr_changed: dict


def train(args: TrainArgs, callbacks: list[Callback] | None = None) -> Path:
    """Train `args.model` over `args.tasks` into the run folder `args.out`; returns its path.
    Under torchrun (WORLD_SIZE > 1 in the environment) every rank calls this; rank 0 writes."""
    options.check_args(args)
    device = resolve_device(args.device)
    torch.set_flush_denormal(True)  # mixture losses drift into denormals (DESIGN.md)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.amp == "bf16" and device.type == "mps":
        raise TrainingError("--amp bf16 is not supported on MPS; use --amp none")
    d = ddp.from_env()
    device = ddp.init(d, device)
    try:
        return _train(args, callbacks, Path(args.out), d, device)
    finally:
        ddp.shutdown(d)


def _setup(args, out, tasks, device, d, probe, pick=False) -> resume.Resumed:
    """The state training starts from on this rank; rank 0 alone checks and writes the folder,
    the other ranks follow its choice of checkpoint (`pick`). A new run is checked (options,
    model size, one reconstruction of `probe` images) before its folder is written."""
    if d.is_main:
        options.check_out(out, args.resume)
    if args.resume:
        return resume.prepare(args, out, tasks, device, write=d.is_main, pick=pick)
    for key, default in resume.DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    args.seed = 0 if args.seed is None else args.seed
    config = build_config(args.model, tasks, args.overrides)
    torch.manual_seed(args.seed)  # the initial weights are part of the run's seed
    model = models.build(args.model, config).to(device)
    options.dry_run(model, probe.to(device), tasks)
    train_args = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "overrides": args.overrides,
        "store_dtype": args.store_dtype,
        "amp": args.amp,
        "world_size": d.world,
    }
    manifest = runs.new_manifest(
        args.model, model.config_dict(), tasks, args.seed, str(device), train_args
    )
    if d.is_main:
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:  # the manifest first: a folder holding anything of ours is a resumable run
            runs.write_manifest(out, manifest)
        except OSError:
            checkpoint.clean_partial(out)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        (out / "log.jsonl").write_text("")
    return resume.Resumed(model, manifest, {}, 0)


def _train(args, callbacks, out, d, device) -> Path:
    tasks = ldata.parse_tasks(",".join(args.tasks))
    if not d.enabled:  # before the data is loaded (under torchrun: rank 0 in _setup)
        options.check_out(out, args.resume)
    if not args.resume:  # options and model size too (cheap: a build on the meta device)
        build_config(args.model, tasks, args.overrides)
    seed = args.seed if args.seed is not None else _run_seed(out) if args.resume else 0
    # Load every task before touching the disk, so bad data writes nothing.
    train_sets = [ldata.load_task(t, "train", seed) for t in tasks]
    test_sets = [ldata.load_task(t, "test", seed) for t in tasks]
    try:
        return _run(args, callbacks, out, d, device, tasks, train_sets, test_sets)
    except OSError as exc:  # a full disk, a read-only or vanished folder, a permission
        if d.is_main:
            resume.mark_interrupted(out)
            with contextlib.suppress(OSError):  # a cut temporary holds the space it took
                checkpoint.clean_partial(out)
        raise write_error(out, exc, (out / "manifest.json").is_file()) from None


def _run(args, callbacks, out, d, device, tasks, train_sets, test_sets) -> Path:
    probe = train_sets[0].x[:2]
    if d.enabled:  # rank 0's checks first; the others follow only if they passed
        err = None
        if d.is_main:
            try:
                r = _setup(args, out, tasks, device, d, probe)
            except (TrainingError, ValueError, OSError) as exc:
                err = exc
        if not ddp.all_ok(d, err is None):
            raise err or TrainingError("rank 0 could not start the run (see its message)")
        pick = ddp.broadcast_json(d, r.ckpt.path.name if d.is_main and r.ckpt else None)
        if not d.is_main:
            r = _setup(args, out, tasks, device, d, probe, pick)
    else:
        r = _setup(args, out, tasks, device, d, probe)
    model, manifest = r.model, r.manifest
    if d.is_main:
        cbs = [JSONLLog(out / "log.jsonl", args.log_every)]
        cbs += [Progress()] if callbacks is None else callbacks
    else:
        cbs = []
    ctx = _Ctx(args, out, d, device, cbs, r.stored, r.lr_changed)
    for cb in cbs:
        cb.on_start({"run": str(out), "tasks": tasks, "start_task": r.start})
    ckpt = r.ckpt
    try:
        for p, phase in enumerate(model.training_phases(len(tasks))):
            t = phase[-1]
            if t < r.start:
                continue
            data = ldata.join_tasks([train_sets[i] for i in phase], phase)
            _train_task(ctx, model, manifest, t, tasks, data, ckpt)
            ckpt = None
            manifest["events"] += events.from_hook(model.after_task(t, data), t)
            ddp.broadcast_model(d, model)  # after_task may draw random numbers (EWC's Fisher)
            if d.is_main:
                _finish_task(ctx, model, manifest, p, t, tasks, test_sets)
            ddp.barrier(d)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from the app's Cancel (see __main__)
        if d.is_main:
            # What the folder holds is still a valid, resumable run: say so in its manifest
            # (written atomically, from the state of the last complete snapshot on disk).
            resume.mark_interrupted(out)
        raise
    finally:  # a bar left open would swallow the error line that follows into its own
        for cb in cbs:
            if isinstance(cb, Progress):
                cb.on_end({"run": str(out)})
    if d.is_main:
        manifest["status"] = "complete"
        manifest.pop("checkpoint", None)
        runs.write_manifest(out, manifest)
        checkpoint.remove_all(out)
        for cb in cbs:
            cb.on_end({"run": str(out)})
    ddp.barrier(d)
    return out


def _run_seed(out: Path) -> int:
    """The seed recorded in a run's manifest (0 if unreadable: resume says what is wrong)."""
    try:
        return int(json.loads((out / "manifest.json").read_text()).get("seed", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _finish_task(ctx, model, manifest, p, t, tasks, test_sets) -> None:
    """Rank 0: evaluate on every task, store the latent map and the snapshot."""
    args, out = ctx.args, ctx.out
    model.eval()
    row = evaluate(model, test_sets, args.eval_samples)
    if args.map_points:  # the latent map's first paint reads this instead of fitting
        points = embedding.default_map(model, test_sets, args.map_points)
        runs.save_extra(out, manifest, "map", t, embedding.stored_map(points))
    if model.capabilities.mixture:  # Compare experts' table, read instead of computed
        table = evaluation.expert_elbo_table(model, test_sets, tasks, args.store_dtype)
        runs.save_extra(out, manifest, evaluation.EXPERT_TABLE, t, table)
    model.train()
    if "routing" in row:
        routed = events.Routing(t, after_task=t, fractions=row.pop("routing"))
        manifest["events"].append(routed.to_dict())
    for name, values in row.items():
        manifest["metrics"].setdefault(name, [])
        manifest["metrics"][name] = manifest["metrics"][name][:p] + [values]
    # The evaluation images travel with the run (evaldata.py): every task's, with the first
    # snapshot; a resumed run made before this adds the missing ones here.
    evaldata.write_missing(out, manifest, test_sets, n=args.eval_images)
    runs.save_snapshot(out, manifest, model, t, ctx.stored, args.store_dtype)
    manifest.pop("checkpoint", None)
    runs.write_manifest(out, manifest)
    checkpoint.remove_before(out, t + 1)  # the snapshot supersedes this task's checkpoints
    for cb in ctx.cbs:
        cb.on_task_end({"task": t, "n_tasks": len(tasks), **{k: v for k, v in row.items()}})


def _rank_seed(seed: int, t: int, epoch: int, rank: int) -> int:
    """Noise seed of ranks > 0 for one epoch (rank 0 keeps the single-process stream)."""
    return zlib.crc32(f"{seed}/{t}/{epoch}/{rank}".encode())


def _train_task(ctx: _Ctx, model, manifest, t, tasks, data, ckpt) -> None:
    args, d, device = ctx.args, ctx.dist, ctx.device
    if ckpt is None:
        torch.manual_seed(args.seed * 1000 + t)  # per-task seed: a resumed run redoes t exactly
        manifest["events"] += events.from_hook(model.before_task(t, data), t)
        ddp.broadcast_model(d, model)
        if d.is_main:
            runs.write_manifest(args.out, manifest)
    optimizers = model.make_optimizers()
    gen = torch.Generator().manual_seed(args.seed * 1000 + t)
    first_epoch = 0
    if ckpt is not None:  # go on exactly where the checkpoint left off
        try:
            checkpoint.load_optimizers(optimizers, ckpt, keep_lr=bool(ctx.lr_changed))
        except checkpoint.CheckpointError as exc:
            raise TrainingError(f"cannot resume from {exc}") from None
        torch.set_rng_state(ckpt.tensors["rng/torch"])
        gen.set_state(ckpt.tensors["rng/data"])
        if device.type == "cuda" and "rng/cuda" in ckpt.tensors:
            torch.cuda.set_rng_state(ckpt.tensors["rng/cuda"], device)
        first_epoch = ckpt.epoch
    opts = ddp.wrap_optimizers(d, optimizers)
    n = len(data)
    bs = math.ceil(args.batch_size / d.world)  # per rank: the global batch stays batch_size
    steps = max(1, math.ceil(math.ceil(n / d.world) / bs))
    total = steps * args.epochs
    step = first_epoch * steps
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.amp == "bf16"
        else contextlib.nullcontext()
    )
    model.train()
    for epoch in range(first_epoch, args.epochs):
        if d.enabled:
            order = ddp.shard(d, n, args.seed * 1000 + t, epoch)
            if d.rank > 0:
                torch.manual_seed(_rank_seed(args.seed, t, epoch, d.rank))
        else:
            order = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        t0 = time.time()
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            batch = {
                k: v[idx].to(device) for k, v in (("x", data.x), ("y", data.y), ("task", data.task))
            }
            model.progress = step / total
            with amp:
                terms = model.train_step(batch, t, opts)
            ddp.finish_step(d, opts)
            values = _host_values(terms)
            if not ddp.all_ok(d, math.isfinite(values["total"])):
                _fail_non_finite(ctx, manifest, terms, t, epoch, i)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            step += 1
            info = {
                "task": t,
                "n_tasks": len(tasks),
                "epoch": epoch,
                "step": step,
                "total_steps": total,
                "_new_task": step == 1 or (i == 0 and epoch == first_epoch),
                **values,
            }
            for cb in ctx.cbs:
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
        for cb in ctx.cbs:
            cb.on_epoch(epoch_info)
        done = epoch + 1
        every = args.checkpoint_every
        if every and done % every == 0 and done < args.epochs:  # the snapshot follows the last
            _checkpoint(ctx, model, optimizers, manifest, t, done, step, gen)


def _host_values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar terms as floats, with one device-to-host copy for all the terms that live on a
    GPU (each float() of a CUDA tensor would be a sync of its own); some families compute a
    schedule term (beta, alpha) on the CPU."""
    on_device = [k for k, v in terms.items() if v.device.type != "cpu"]
    values = {k: float(v.detach()) for k, v in terms.items() if v.device.type == "cpu"}
    if on_device:
        host = torch.stack([terms[k].detach().float().reshape(()) for k in on_device]).tolist()
        values |= dict(zip(on_device, host, strict=True))
    return {k: values[k] for k in terms}


def _fail_non_finite(ctx, manifest, terms, t, epoch, i) -> None:
    loss = float(terms["total"].detach())
    if ctx.dist.is_main:
        manifest["status"] = f"failed: non-finite loss at task {t} epoch {epoch} step {i}"
        runs.write_manifest(ctx.out, manifest)
    named = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    where = "" if math.isfinite(loss) else f" ({named})"
    value = loss if not math.isfinite(loss) else "non-finite on another rank"
    raise TrainingError(
        f"loss became {value} at task {t}, epoch {epoch}, step {i}{where};"
        f" snapshots up to task {t - 1} and checkpoints are kept; lower the learning rate"
        " (--set lr=...) and --resume"
    )


def _checkpoint(ctx, model, optimizers, manifest, t, done, step, gen) -> None:
    """Rank 0 writes a checkpoint after `done` epochs of task t; never one with NaN weights."""
    args, d = ctx.args, ctx.dist
    bad = checkpoint.non_finite(model, optimizers)
    if not ddp.all_ok(d, bad is None):
        if d.is_main:
            manifest["status"] = f"failed: non-finite weights at task {t} after epoch {done}"
            runs.write_manifest(ctx.out, manifest)
        raise TrainingError(
            f"weights became non-finite ({bad or 'on another rank'}) at task {t} after"
            f" epoch {done}; the earlier checkpoints and snapshots are kept; lower the learning"
            " rate (--set lr=...) and --resume"
        )
    if not d.is_main:
        return
    info = {
        "tasks": manifest["tasks"],
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "world_size": d.world,
    }
    position = {"task": t, "epoch": done, "step": step}
    path = checkpoint.save(
        ctx.out, model, optimizers, position, info, manifest["events"], ctx.stored, gen
    )
    manifest["checkpoint"] = {"task": t, "epoch": done, "file": f"{checkpoint.FOLDER}/{path.name}"}
    runs.write_manifest(ctx.out, manifest)


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
