"""Cost of polling a training job, what the Train page's fragment does every second (printed,
nothing asserted).

    python bench/bench_jobs.py [--epochs 40] [--interval 0.1]

(a) live: a real `python -m lifelong train` job (tiny VAE, three digit tasks, batch 16, so it
    logs a step record every 10 steps) polled every --interval seconds until it ends; the
    median / p95 / max of `jobs.poll(job)` and of a whole tick (`list_jobs` of the session plus
    `poll` of each job, as the page does), in ms. Budget: <= 5 ms per tick.
(b) reattach: a page reload or a second tab reading a long finished job's log from the start
    (a synthetic log.jsonl of --lines step records): the first poll reads all of it, later
    polls only stat the files. Budget: the later polls <= 5 ms; the first is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lifelong.train import jobs  # noqa: E402

TASKS = "digits:classes=0-1,digits:classes=2-3,digits:classes=4-5"
TINY = {"latent_dim": 2, "hidden": 16, "channels": 4}


def ms(values: list[float]) -> str:
    v = sorted(values)
    p95 = v[min(len(v) - 1, int(0.95 * len(v)))]
    return f"median {statistics.median(v) * 1e3:6.3f}  p95 {p95 * 1e3:6.3f}  max {v[-1] * 1e3:6.3f}"


def live(root: Path, epochs: int, interval: float) -> None:
    jobs.start(
        "vae",
        TASKS,
        epochs,
        "live",
        root=root,
        device="cpu",
        batch_size=16,
        overrides=TINY,
        session="bench",
    )
    ticks, lists = [], []
    while True:
        t0 = time.perf_counter()
        mine = jobs.list_jobs(root, session="bench")
        t1 = time.perf_counter()
        p = [jobs.poll(j) for j in mine][0]
        ticks.append(time.perf_counter() - t0)
        lists.append(t1 - t0)
        if p.status != "running":
            break
        time.sleep(interval)
    points = len(next(iter(p.curves.values()), ([], []))[0])
    print(f"(a) live job: {p.status} in {p.elapsed:.1f} s, {len(ticks)} ticks, {points} points")
    print(f"    list_jobs            {ms(lists)} ms")
    print(f"    tick (list + poll)   {ms(ticks)} ms   budget <= 5 ms")


def reattach(root: Path, lines: int) -> None:
    run = root / "long"
    run.mkdir()
    with open(run / "log.jsonl", "w") as fh:
        for i in range(lines):
            t, step = divmod(i, lines // 3 + 1)
            rec = {"kind": "step", "time": 0.0, "task": t, "n_tasks": 3, "epoch": 0}
            rec.update(step=10 * (step + 1), total_steps=10 * (lines // 3 + 1))
            rec.update(total=500.0 - i * 1e-3, rec=490.0, kl=10.0)
            fh.write(json.dumps(rec) + "\n")
    job = jobs.Job(run, "long", ["--out", str(run)], 0, "bench", 1.0, "finished", "vae")
    job.tasks, job.ended = TASKS.split(","), 2.0
    job.save()
    t0 = time.perf_counter()
    first = jobs.poll(job)
    t_first = time.perf_counter() - t0
    later = []
    for _ in range(200):
        t0 = time.perf_counter()
        jobs.poll(job)
        later.append(time.perf_counter() - t0)
    size = (run / "log.jsonl").stat().st_size / 2**20
    print(f"(b) reattach to a {lines:,}-record log ({size:.1f} MB)")
    print(f"    first poll           {t_first * 1e3:8.1f} ms (reads it all; curves thinned to")
    print(f"                         {len(first.curves['total'][0])} points per term)")
    print(f"    later polls          {ms(later)} ms   budget <= 5 ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--lines", type=int, default=50_000)
    args = ap.parse_args()
    with open("/proc/loadavg") as fh:
        print(f"load average: {fh.read().split()[0]} (a busy machine inflates the figures)")
    with tempfile.TemporaryDirectory() as tmp:
        live(Path(tmp), args.epochs, args.interval)
        reattach(Path(tmp), args.lines)


if __name__ == "__main__":
    main()
