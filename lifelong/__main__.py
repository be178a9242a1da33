"""Command line: python -m lifelong {train,eval,pretrain,datasets,models} (DESIGN.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
SEED_MAX = 2**32 - 1


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, `error: ...`, exit status 2 (the
    usage is one --help away)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _int(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m lifelong", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a family over a task sequence into a run folder")
    t.add_argument("--model", required=True)
    t.add_argument("--tasks", required=True, help="e.g. digits:classes=0-4,digits:classes=5-9")
    # epochs, batch size, seed and store dtype default to 3, 128, 0, float32 for a new run and
    # to the run's own on --resume (where a contradicting value is refused).
    t.add_argument("--epochs", type=_int(1), default=None, help="epochs per task (default 3)")
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=_int(0, SEED_MAX), default=None, help="default 0")
    t.add_argument("--batch-size", type=_int(1), default=None, help="default 128")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument(
        "--resume",
        action="store_true",
        help="go on from the newest checkpoint or snapshot of --out",
    )
    t.add_argument(
        "--checkpoint-every",
        type=_int(0),
        default=1,
        metavar="N",
        help="write a resumable checkpoint every N epochs inside a task (0: only snapshots)",
    )
    t.add_argument(
        "--amp",
        default="none",
        choices=["none", "bf16"],
        help="bf16: train steps under torch.autocast(bfloat16) (CUDA; CPU works, slower)",
    )
    t.add_argument("--threads", type=_int(1), default=None, help="torch CPU threads")
    t.add_argument("--store-dtype", default=None, choices=["float32", "float16"])
    e = sub.add_parser("eval", help="print a run's forgetting matrices and metrics")
    e.add_argument("run")
    e.add_argument("--json", action="store_true")
    e.add_argument(
        "--metrics",
        default=None,
        help="comma-separated: iwelbo,ssim,frechet,ari,mig,dci,transfer,forward or all",
    )
    e.add_argument("--write", action="store_true", help="store them in the run's manifest")
    e.add_argument("--recompute", action="store_true", help="ignore values stored in the run")
    e.add_argument("--k", type=_int(1), default=50, help="importance samples of the IWELBO")
    e.add_argument("--samples", type=_int(1), default=256, help="test images per task")
    e.add_argument("--seed", type=_int(0, SEED_MAX), default=0)
    e.add_argument("--threads", type=_int(1), default=None, help="torch CPU threads")
    pre = sub.add_parser("pretrain", help="rebuild the shipped runs in pretrained/")
    pre.add_argument("--only", default=None, help="a family key, a run name or classifier")
    pre.add_argument("--device", default="auto")
    pre.add_argument("--out", default=str(PRETRAINED))
    pre.add_argument(
        "--threads",
        type=_int(1),
        default=1,
        help="torch CPU threads (1: the shipped runs' setting)",
    )
    sub.add_parser("datasets", help="dataset names, shapes, sizes, what each is for")
    sub.add_parser("models", help="family keys and their options")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from lifelong.data import DataError
        from lifelong.runs import RunError
        from lifelong.train import TrainingError

        return {
            "train": _train,
            "eval": _eval,
            "pretrain": _pretrain,
            "datasets": _datasets,
            "models": _models,
        }[args.cmd](args)
    except (DataError, RunError, TrainingError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written (the trainer says more)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or _one_line(exc)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("LIFELONG_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (a bug; set"
            " LIFELONG_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _resume_hint(args) -> str:
    """What an interrupted command left: a train run resumes with --resume (if it got as far
    as its manifest); nothing else needs anything."""
    if args.cmd != "train":
        return ""
    out = Path(args.out)
    try:
        status = json.loads((out / "manifest.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return " (no run was started)"
    return f": {out} is complete" if status == "complete" else f": {out} resumes with --resume"


def _train(args) -> int:
    from lifelong import models
    from lifelong.data import parse_tasks
    from lifelong.train import TrainArgs, parse_overrides, train

    if ":" in args.model:  # --model package.module:Class, a family from outside the project
        models.register(args.model)
    models.family(args.model)
    # SIGTERM (the app's Cancel, a scheduler's stop) ends training like Ctrl-C: the manifest
    # says "interrupted" and the run resumes with --resume.
    if threading.current_thread() is threading.main_thread():  # signals: main thread only
        signal.signal(signal.SIGTERM, _interrupt)
    tasks = parse_tasks(args.tasks)
    overrides = parse_overrides(args.model, args.set)
    out = train(
        TrainArgs(
            model=args.model,
            tasks=tasks,
            out=Path(args.out),
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            overrides=overrides,
            resume=args.resume,
            threads=args.threads,
            store_dtype=args.store_dtype,
            checkpoint_every=args.checkpoint_every,
            amp=args.amp,
        )
    )
    if int(os.environ.get("RANK", "0") or 0) == 0:  # under torchrun only rank 0 reports
        print(f"run written to {out}")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # Under torchrun on a busy CPU a worker sometimes aborted in interpreter finalization
        # after a complete run ("terminate called without an active exception": a c10d/gloo
        # thread torn down after its peer had gone), so torchrun reported a failure. Everything
        # is written and the process group destroyed by now: leave without finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _eval(args) -> int:
    from lifelong import evalreport, runeval
    from lifelong.explore.summary import run_report
    from lifelong.runs import RunError, open_run

    names = runeval.parse_metrics(args.metrics)  # a bad name fails before any work
    if Path(args.run).is_file():
        raise RunError(f"{args.run} is a file, not a run folder")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run = open_run(args.run)
    run.load_model()  # validates the weights, not only the manifest
    if args.write:
        evalreport.check_writable(run)
    report = run_report(run)
    result = runeval.evaluate_run(
        run,
        names,
        k=args.k,
        samples=args.samples,
        seed=args.seed,
        recompute=args.recompute,
        log=None if args.json else evalreport.stderr_log,
        require_classifier=bool(
            set(runeval.NEEDS_CLASSIFIER) & set((args.metrics or "").lower().split(","))
        ),
    )
    if args.write:
        evalreport.store(run, result)
    report["eval"] = {**runeval.stored_eval(run), **result["values"]}
    report["eval_skipped"] = result["skipped"]
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{run.name}: {run.family} over {', '.join(run.tasks)} ({len(run.snapshots)} snapshots)")
    for name, table in report["matrices"].items():
        print(f"\n{name} (row: after task k, column: task j)")
        print("        " + "".join(f"{'task ' + str(j):>10}" for j in range(len(run.tasks))))
        for k, row in enumerate(table):
            cells = "".join(f"{'-' if v is None else format(v, '.4g'):>10}" for v in row)
            print(f"after {k:<2}" + cells)
    for key, value in report["summary"].items():
        print(f"{key}: {value}")
    for line in evalreport.format_eval(run, result):
        print(line)
    if not names and report["eval"]:
        print(f"\nstored metrics: {', '.join(report['eval'])} (show with --metrics)")
    return 0


def _pretrain(args) -> int:
    from lifelong import evaldata
    from lifelong.train import TrainArgs, resolve_device, train
    from lifelong.zoo import ZOO, write_index

    out_root = Path(args.out)
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"--out {out_root} is a file, not a folder")
    resolve_device(args.device)  # a wrong device fails before any training
    chosen = [z for z in ZOO if args.only in (None, z["family"], z["name"])]
    if not chosen and args.only != "classifier":
        raise ValueError(
            f"--only {args.only!r} matches nothing; valid: "
            + ", ".join(sorted({z["family"] for z in ZOO} | {z["name"] for z in ZOO}))
            + ", classifier"
        )
    for entry in chosen:  # a folder of the user's under a run's name is never replaced
        target = out_root / entry["name"]
        if target.exists() and not (target / "manifest.json").is_file():
            raise ValueError(f"{target} exists and is not a run; move it away or use --out")
    missing = _missing_data(chosen, named=args.only is not None and args.only != "classifier")
    if args.only in (None, "classifier"):
        _feature_classifier(out_root, args)
        if args.only == "classifier":
            return 0
    for entry in chosen:
        if entry["name"] in missing:  # a full rebuild without Fashion-MNIST: one line each
            print(f"skipping {entry['name']}: {missing[entry['name']]}", file=sys.stderr)
            continue
        target = out_root / entry["name"]
        tmp = out_root / f".{entry['name']}.building"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"training {entry['name']} ...", file=sys.stderr)
        train(
            TrainArgs(
                model=entry["family"],
                tasks=entry["tasks"],
                out=tmp,
                epochs=entry["epochs"],
                batch_size=entry["batch_size"],
                seed=entry["seed"],
                device=args.device,
                overrides=entry["set"],
                threads=args.threads,
                store_dtype="float16",
                eval_images=entry.get("eval_images", evaldata.EVAL_IMAGES),
                log_every=ZOO_LOG_EVERY,
            )
        )
        _zoo_eval(tmp, entry.get("eval", ZOO_EVAL))
        _slim(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        print(f"wrote {target}")
    out_root.mkdir(parents=True, exist_ok=True)
    write_index(out_root)
    return 0


ZOO_EVAL = "iwelbo,ssim,frechet,fitting,mig,dci,forward,drift"  # drift: + the map's time-lapse
# The shipped runs log a step every 50 (the trainer's default is 10): their Training curves keep
# every epoch's mean and a point per 50 steps, and their logs are 5x smaller (pretrained/ <= 80 MB).
ZOO_LOG_EVERY = 50


def _zoo_eval(run_dir: Path, metrics: str) -> None:
    """Store the zoo's headline metrics in the run's manifest (the app shows them as they are)."""
    from lifelong import evalreport, runeval
    from lifelong.runs import open_run

    run = open_run(run_dir)
    result = runeval.evaluate_run(run, runeval.parse_metrics(metrics), log=evalreport.stderr_log)
    evalreport.store(run, result)


def _missing_data(entries: list[dict], named: bool) -> dict[str, str]:
    """{run name: why} for zoo runs whose dataset files are absent (Fashion-MNIST without the
    Debian package). A run the user named is an error instead of a skip."""
    from lifelong.data import DataError, load_task

    missing, checked = {}, {}
    for entry in entries:
        for spec in entry["tasks"]:
            if spec not in checked:
                try:
                    load_task(spec, "test")
                    checked[spec] = None
                except DataError as exc:
                    checked[spec] = str(exc)
            if checked[spec]:
                missing[entry["name"]] = checked[spec]
                break
    if named and missing:
        raise ValueError(next(iter(missing.values())))
    return missing


def _slim(run_dir: Path) -> None:
    """Where the run stores its time-lapse, keep only the last snapshot's default map: the
    Latent map shows the time-lapse, and a stored map only while another projection computes
    (the last snapshot is the page's default). Keeps pretrained/ within its 80 MB."""
    from lifelong import runs

    manifest = runs.open_run(run_dir).manifest
    extras = manifest.get("extras", {})
    if not extras.get("timelapse") or not extras.get("map"):
        return
    last = max(int(t) for t in extras["map"])
    for t in [int(t) for t in extras["map"] if int(t) != last]:
        runs.drop_extra(run_dir, manifest, "map", t)
    runs.write_manifest(run_dir, manifest)


def _feature_classifier(root: Path, args) -> None:
    """Train the Frechet distance's feature classifiers in `root`: feature-classifier.safetensors
    (embedded datasets) and, where Fashion-MNIST is installed, feature-classifier-fashion.
    safetensors. Always with --only classifier; in a full rebuild only when missing or invalid,
    so their bytes stay the same otherwise."""
    import torch

    from lifelong import classifier as clf
    from lifelong.data import DataError, load_task

    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = [(clf.DEFAULT_PATH.name, {}, "the feature classifier")]
    try:
        load_task("fashion", "test")
        fashion = {"datasets": clf.FASHION_DATASETS, "invert": False, "epochs": 15}
        kinds.append((clf.FASHION_PATH.name, fashion, "the Fashion-MNIST feature classifier"))
    except DataError as exc:
        print(f"skipping the Fashion-MNIST feature classifier: {exc}", file=sys.stderr)
    for name, kw, what in kinds:
        path = root / name
        if args.only is None:
            try:
                clf.load_classifier(path)
                continue
            except clf.ClassifierError:
                pass
        print(f"training {what} ...", file=sys.stderr)
        meta = clf.build_classifier(path, **kw)
        print(f"wrote {path} (test accuracy {meta['test_accuracy']})")


def _datasets(args) -> int:
    from lifelong.data import datasets

    print(f"{'name':<9} {'shape':<8} {'train':>10} {'test':>10} {'classes':>7}  what it is for")
    for d in datasets():
        print(
            f"{d['name']:<9} {d['shape']:<8} {d['train']:>10} {d['test']:>10} "
            f"{d['classes']:>7}  {d['purpose']}"
        )
        extra = f"; factors: {', '.join(d['factors'])}" if d.get("factors") else ""
        print(f"{'':<9} options: {', '.join(d['options'])}{extra}")
    print("\nA task sequence is a comma-separated list, e.g. digits:classes=0-4,digits:classes=5-9")
    return 0


def _models(args) -> int:
    from lifelong import models

    for key in sorted(models.keys()):
        print(f"{key}: {models.DESCRIPTIONS.get(key, '')}")
        opts = ", ".join(
            f"{n}={v}" for n, v in models.options(key) if n not in ("image_shape", "n_tasks")
        )
        print(f"  --set options: {opts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
