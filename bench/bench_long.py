"""Long task sequences: what 3, 5 and 10 tasks cost an L-MVAE with as many experts (printed,
nothing asserted; issue 15, "Long sequences stay fast").

    python bench/bench_long.py [--tasks 3,5,10] [--data fashion|digits] [--work DIR]
                               [--steps 8] [--repeats 3] [--set key=value ...] [--only abcd]
                               [--quick]

For each length T an L-MVAE run is trained by the command line (one class per task,
`fashion:classes=0` ... `fashion:classes=T-1`, 1 epoch a task, K = T experts, --threads 1;
`digits:classes=K` with a printed note where Fashion-MNIST is not installed), then:

(a) Train step: at the start of each task t (snapshot t-1 loaded, `before_task(t)` called, a
    fresh optimizer, as the trainer does), one `train_step` of the mixture on a batch of 128
    against the sum of one plain VAE step (forward, eq. 1's terms, backward, Adam) of each
    free expert alone, on deep copies. Median ms of --steps steps per side, interleaved. A
    ratio near 1 means the mixture costs what its free experts cost and nothing more.
(b) After each task: the trainer's own wall time from log.jsonl (train: from the previous
    task's end to this task's last epoch record; finish: from there to the task record, i.e.
    after_task + evaluation + stored latent map + expert table + evaluation images + snapshot
    write), and at the last snapshot the split of finish: `evaluate` on every task (512
    images each; and as it was before it selected once), the stored map
    (`latentmap.default_map`), the stored expert table (`evaluation.expert_elbo_table`) and
    `save_snapshot` alone.
(c) Every page's render on the last snapshot (AppTest, bench_views' helpers): the first render
    (model load, test data, cold caches) and the median of --repeats reruns. Budget: <= 1 s
    at 10 tasks x 10 experts. UMAP is compiled first, untimed (the Latent map page would
    compile it in a thread beside the pages after it). Then Compare experts again as for a
    run made before the trainer stored its table (computed on the first render).
(d) The run's size: total bytes on disk, by kind (snapshots, stored maps, evaluation images,
    log and manifest), each snapshot file's size with the experts it stores, and what the
    snapshots would take stored as float16. Budget: grows with what changed, not with
    tasks x experts.

Runs are kept under --work (default: a temporary folder) and reused when complete with the
same tasks, so pages can be remeasured after a code change without training again; --only
picks sections. --quick:
digits, 2 and 3 tasks, small networks, 2 steps, 1 rerun (the smoke test; ~30 s).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import bench_views  # noqa: E402  (app_for, PAGES)

BATCH = 128
PAGE_BUDGET = 1.0
QUICK_SET = ["channels=8", "hidden=32", "latent_dim=4"]


def task_specs(data: str, n: int) -> list[str]:
    return [f"{data}:classes={k}" for k in range(n)]


def pick_data(wanted: str) -> str:
    """`wanted` if its files are there, else `digits` with a printed note."""
    from lifelong import data as ldata

    if wanted == "digits":
        return wanted
    try:
        ldata.load_task(f"{wanted}:classes=0", "test")
    except ldata.DataError as exc:
        print(f"note: {wanted} is not available ({exc}); using the embedded digits instead")
        return "digits"
    return wanted


def train_run(out: Path, tasks: list[str], sets: list[str], threads: int) -> float:
    """Train (or reuse) an L-MVAE run at `out`; returns the wall seconds spent (0: reused)."""
    manifest = out / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("status") == "complete" and m.get("tasks") == tasks:
            return 0.0
        raise SystemExit(f"{out} holds another or an unfinished run: remove it or pick --work")
    cmd = [sys.executable, "-m", "lifelong", "train", "--model", "lmvae", "--epochs", "1"]
    cmd += ["--tasks", ",".join(tasks), "--device", "cpu", "--threads", str(threads)]
    cmd += ["--out", str(out)] + [a for kv in sets for a in ("--set", kv)]
    print(f"training {out.name}: {len(tasks)} tasks ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"training {out.name} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


# -- (a) the train step ----------------------------------------------------------------------
def single_steps(model, free: list[int]):
    """step(x) -> one plain VAE step of each free expert alone (deep copies, own Adam)."""
    import torch

    from lifelong import losses
    from lifelong.models import stacked

    sides = []
    for k in free:
        net = stacked.ExpertTerms(copy.deepcopy(model.experts_[k]))
        sides.append((net, torch.optim.Adam(net.parameters(), lr=model.config.lr)))

    def step(x):
        for net, opt in sides:
            eps = torch.randn(len(x), model.config.latent_dim)
            loss = -losses.elbo(net(x, eps)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def step_costs(run, t: int, data, steps: int) -> dict:
    """Median seconds of the mixture's train_step and of its free experts' single steps at
    the start of task t (module doc, (a))."""
    import torch

    from lifelong import models

    if t == 0:
        model = models.build(run.family, run.config(), None)
    else:
        model = run.load_model(t - 1)
    model.train()
    model.progress = 0.0
    model.before_task(t, data)
    free = model.trainable.nonzero().flatten().tolist()
    opts = model.make_optimizers()
    single = single_steps(model, free)
    g = torch.Generator().manual_seed(t)

    def batch():
        return data.x[torch.randint(len(data.x), (BATCH,), generator=g)]

    mix = lambda x: model.train_step({"x": x}, t, opts)  # noqa: E731
    for fn in (mix, single):  # warm-up: Adam state, allocator
        fn(batch())
    times = {"mix": [], "single": []}
    for _ in range(steps):
        for name, fn in (("mix", mix), ("single", single)):
            x = batch()
            t0 = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - t0)
    return {"free": len(free), **{k: statistics.median(v) for k, v in times.items()}}


# -- (b) after each task -------------------------------------------------------------------------
def task_times(run) -> list[dict]:
    """Per task from log.jsonl: train s (previous task record -> last epoch record) and
    finish s (last epoch record -> task record)."""
    recs = run.log()
    start = min((r["time"] for r in recs if "time" in r), default=0.0)
    out, last_epoch, prev_end = [], None, None
    for r in recs:
        if r.get("kind") == "epoch":
            last_epoch = r["time"]
        elif r.get("kind") == "task" and last_epoch is not None:
            begin = prev_end if prev_end is not None else start
            out.append({"train": last_epoch - begin, "finish": r["time"] - last_epoch})
            prev_end = r["time"]
    return out


def finish_split(run, tests) -> dict:
    """Seconds of the trainer's evaluation, stored map, stored expert table and snapshot
    write at the last snapshot, each alone (the snapshot is written to a throwaway folder),
    and of the evaluation as it was before it selected once (reconstruct, score and select
    per batch: models.base.assess on an L-MVAE)."""
    import types

    from lifelong import evaluation, runs
    from lifelong.explore import latentmap
    from lifelong.models.base import GenerativeModel
    from lifelong.train.evaluate import evaluate

    model = run.load_model(run.snapshots[-1])
    out = {}
    t0 = time.perf_counter()
    row = evaluate(model, tests, 512)
    out["evaluate"] = time.perf_counter() - t0
    three = copy.copy(model)  # the same modules; assess as the base class has it
    three.assess = types.MethodType(GenerativeModel.assess, three)
    t0 = time.perf_counter()
    out["same"] = evaluate(three, tests, 512) == row
    out["evaluate_before"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation.expert_elbo_table(model, tests, run.tasks)
    out["table"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    latentmap.default_map(model, tests)
    out["map"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        runs.save_snapshot(Path(d), {"snapshots": []}, model, run.snapshots[-1], {})
        out["snapshot"] = time.perf_counter() - t0
    return out


# -- (c) pages -----------------------------------------------------------------------------------
def warm_up_umap(threads: int) -> None:
    """Compile UMAP before the pages are timed: the Latent map page otherwise compiles it in a
    thread of its own (~20 s) beside the pages that follow it. Importing it (numba) sets this
    thread's torch threads to the core count, so they are set back (measured: an evaluation
    took 1.3 s before, 3.6 s after, 0.95 s once reset)."""
    import torch

    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
    from lifelong.explore import latentmap

    print(f"UMAP warm-up: {latentmap.warm_up_umap():.1f} s (before the pages are timed)")
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def page_times(run_dir: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """Title -> (first render s, median rerun s) of every page on the run's last snapshot;
    a page that raised gets its message instead of the rerun time."""
    at = bench_views.app_for(run_dir)
    out = {}
    for path, title in bench_views.PAGES:
        first, times = _render(at, path, repeats)
        if at.exception:  # printed in its row; the other pages are still measured
            out[title] = (first, at.exception[0].message.splitlines()[0][:60])
            continue
        out[title] = (first, statistics.median(times))
    out[UNSTORED] = unstored_experts_page(at, repeats)
    return out


def _render(at, path: str, repeats: int) -> tuple[float, list[float]]:
    """Seconds of the page's first render and of each of `repeats` reruns."""
    t0 = time.perf_counter()
    at.switch_page(path).run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
    return first, times


UNSTORED = "Compare experts, made before the stored table"


def unstored_experts_page(at, repeats: int) -> tuple[float, float]:
    """The Compare experts page of a run made before the trainer stored each expert's ELBO on
    each task: computed on the first render (caches cleared), read from st.cache_data after."""
    import streamlit as st

    from lifelong.explore import experts

    real = experts.stored_scores
    experts.stored_scores = lambda *a: None
    try:
        st.cache_data.clear()
        first, times = _render(at, "views/experts.py", repeats)
    finally:
        experts.stored_scores = real
    return first, statistics.median(times)


# -- (d) size ------------------------------------------------------------------------------------
def sizes(run) -> dict:
    """Bytes on disk by kind; per snapshot file its bytes and the experts it stores (those
    whose weights changed during that task); and the snapshots' bytes had the run been
    stored as float16 (`--store-dtype float16`: each snapshot stored again from its weights)."""
    from safetensors import safe_open

    from lifelong import runs

    kinds = {"snapshots": 0, "maps": 0, "evaldata": 0, "other": 0}
    for f in run.path.iterdir():
        prefix = f.name.split("-")[0]
        kind = {"task": "snapshots", "map": "maps", "evaldata": "evaldata"}.get(prefix, "other")
        kinds[kind] += f.stat().st_size if f.is_file() else 0
    per = []
    for entry in run.manifest["snapshots"]:
        with safe_open(run.path / entry["file"], "pt") as fh:
            held = {k.split(".")[1] for k in fh.keys() if k.startswith("experts_.")}
        per.append((entry["bytes"], len(held)))
    half, stored = 0, {}
    with tempfile.TemporaryDirectory() as d:
        for k in run.snapshots:
            model = run.load_model(k)
            half += runs.save_snapshot(Path(d), {"snapshots": []}, model, k, stored, "float16")[
                "bytes"
            ]
    return {"total": sum(kinds.values()), **kinds, "per": per, "float16": half}


def mb(n: float) -> str:
    return f"{n / 1e6:.2f}" if n < 1e6 else f"{n / 1e6:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="3,5,10", help="sequence lengths, comma-separated")
    ap.add_argument("--data", default="fashion", help="fashion (default) or digits")
    ap.add_argument("--work", help="keep (and reuse) the runs here; default: a temporary folder")
    ap.add_argument("--steps", type=int, default=8, help="(a): timed steps per side and task")
    ap.add_argument("--repeats", type=int, default=3, help="(c): reruns per page")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--only", default="abcd", help="sections to measure, e.g. cd")
    ap.add_argument("--quick", action="store_true", help="the smoke test's small version")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.data, args.steps, args.repeats = "2,3", "digits", 2, 1
        args.set = [*QUICK_SET, *args.set]
    import torch

    from lifelong import data as ldata
    from lifelong import runs

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    lengths = [int(n) for n in args.tasks.split(",")]
    data = pick_data(args.data)
    print(
        f"torch {torch.__version__}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f};"
        f" {args.threads} thread(s); data {data}; --set {' '.join(args.set) or '(defaults)'}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        dirs = {n: work / "long" / f"lmvae-{data}-{n}" for n in lengths}
        results = {}
        for n, out in dirs.items():
            out.parent.mkdir(parents=True, exist_ok=True)
            results[n] = {"wall": train_run(out, task_specs(data, n), args.set, args.threads)}
        for n, out in dirs.items():  # the pages last: the Latent map page starts a thread
            run = runs.open_run(out)
            trains = [ldata.load_task(t, "train") for t in run.tasks]
            tests = [ldata.load_task(t, "test") for t in run.tasks]
            if "a" in args.only:
                results[n]["steps"] = [step_costs(run, t, trains[t], args.steps) for t in range(n)]
            if "b" in args.only:
                results[n]["tasks"], results[n]["split"] = task_times(run), finish_split(run, tests)
            if "d" in args.only:
                results[n]["size"] = sizes(run)
        if "c" in args.only and not args.quick:
            warm_up_umap(args.threads)
        for n, out in dirs.items():
            if "c" in args.only:
                results[n]["pages"] = page_times(out, args.repeats)
        report(results)
    return 0


def report(results: dict) -> None:
    """Print the sections that were measured (--only)."""
    first = next(iter(results.values()))
    sections = (("steps", report_a), ("tasks", report_b), ("pages", report_c), ("size", report_d))
    for key, fn in sections:
        if key in first:
            fn(results, list(results))


def report_a(results: dict, ns: list[int]) -> None:
    print("\n(a) train step at the start of each task: mixture vs its free experts alone, ms")
    print(f"  {'tasks':>5} {'task':>4} {'free':>4} {'mixture':>8} {'sum of singles':>15} ratio")
    for n in ns:
        for t, s in enumerate(results[n]["steps"]):
            ratio = s["mix"] / s["single"]
            print(
                f"  {n:>5} {t:>4} {s['free']:>4} {s['mix'] * 1e3:>8.1f}"
                f" {s['single'] * 1e3:>15.1f} {ratio:.2f}"
            )


def report_b(results: dict, ns: list[int]) -> None:
    print("\n(b) after each task (trainer's log): train s / finish s (eval + map + snapshot)")
    for n in ns:
        r = results[n]
        cells = " ".join(f"{x['train']:.1f}/{x['finish']:.1f}" for x in r["tasks"])
        sp = r["split"]
        trained = f"; trained in {r['wall']:.0f} s" if r["wall"] else " (reused run)"
        print(f"  {n:>2} tasks: {cells}{trained}")
        print(
            f"           last snapshot alone: evaluate {sp['evaluate']:.2f} s (selecting"
            f" three times, as before: {sp['evaluate_before']:.2f} s, same metrics:"
            f" {'yes' if sp['same'] else 'NO'}), map {sp['map']:.2f} s,"
            f" expert table {sp['table']:.2f} s, snapshot write {sp['snapshot']:.2f} s"
        )


def report_c(results: dict, ns: list[int]) -> None:
    print(
        f"\n(c) page render on the last snapshot: first / median rerun, s (budget <= {PAGE_BUDGET})"
    )
    print("  " + f"{'page':<20}" + "".join(f"{f'{n} tasks':>16}" for n in ns))
    worst = {n: [0.0, 0.0] for n in ns}  # first render, rerun
    for _, title in bench_views.PAGES:
        cells = ""
        for n in ns:
            first, rerun = results[n]["pages"][title]
            if isinstance(rerun, str):
                cells += f"  error: {rerun}"
                worst[n] = [float("inf")] * 2
                continue
            worst[n] = [max(worst[n][0], first), max(worst[n][1], rerun)]
            cells += f"{f'{first:.2f} / {rerun:.2f}':>16}"
        print(f"  {title:<20}{cells}")
    for i, what in enumerate(("slowest first", "slowest rerun")):
        verdict = "".join(
            f"{('ok' if worst[n][i] <= PAGE_BUDGET else 'OVER') + f' ({worst[n][i]:.2f})':>16}"
            for n in ns
        )
        print(f"  {what:<20}{verdict}")
    cells = "".join(f"{'{:.2f} / {:.2f}'.format(*results[n]['pages'][UNSTORED]):>16}" for n in ns)
    print(f"  {'Compare experts':<20}{cells}  (a run made before the stored table: computed)")


def report_d(results: dict, ns: list[int]) -> None:
    print("\n(d) run size on disk, MB (float16: the same snapshots stored as float16)")
    head = f"  {'tasks':>5} {'total':>7} {'snapshots':>9} {'float16':>8} {'maps':>6}"
    print(head + f" {'evaldata':>8} {'other':>6}")
    for n in ns:
        s = results[n]["size"]
        print(
            f"  {n:>5} {mb(s['total']):>7} {mb(s['snapshots']):>9} {mb(s['float16']):>8}"
            f" {mb(s['maps']):>6} {mb(s['evaldata']):>8} {mb(s['other']):>6}"
        )
    print("  per snapshot file: MB (experts stored)")
    for n in ns:
        cells = " ".join(f"{mb(b)} ({k})" for b, k in results[n]["size"]["per"])
        print(f"  {n:>5} tasks: {cells}")


if __name__ == "__main__":
    sys.exit(main())
