"""What a poll of a training job reads: the log's new lines, the manifest's snapshots, and the
progress they add up to (task k of n, epoch, step, fraction, ETA, loss curves). Split from
`jobs` (which starts, cancels and resumes the processes); no Streamlit here.

Incremental: log.jsonl is read from the offset the last poll stopped at, and a resume that
rewrites the log is noticed (another inode, a smaller size, or other bytes before the offset).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_POINTS = 400  # per loss curve; older points are thinned (every other one) beyond this
NOT_TERMS = {"kind", "time", "task", "n_tasks", "epoch", "step", "total_steps", "_new_task"}
NOT_TERMS |= {"seconds", "images_per_s"}


@dataclass
class _Tail:
    """What polls have read of a run so far: log offset, loss curves, the last records."""

    started: float
    epochs: int = 1
    offset: int = 0
    inode: int = 0
    mark: bytes = b""  # the last bytes read: a log rewritten under the offset shows here
    xs: list[float] = field(default_factory=list)
    terms: dict[str, list] = field(default_factory=dict)
    stride: int = 1
    seen: int = 0
    last: dict | None = None
    stepped: set = field(default_factory=set)  # tasks with step records
    steps_per_epoch: dict[int, float] = field(default_factory=dict)
    manifest_mtime: int = -1
    snapshots: list[int] = field(default_factory=list)
    job_mtime: int = -1


@dataclass
class Progress:
    status: str
    error: str | None
    task: int  # 0-based; the task being trained (or the last one finished)
    n_tasks: int
    epoch: int  # 0-based
    epochs: int
    step: int  # within the task
    total_steps: int  # of the task (0: not known yet)
    fraction: float  # of the whole job, 0..1
    elapsed: float  # seconds since this attempt started
    eta: float | None  # seconds left, from elapsed time and the fraction done
    snapshots: list[int]  # after_task of every snapshot written so far
    curves: dict[str, tuple[list[float], list[float | None]]]  # term -> (x in tasks, values)
    text: str  # "task 2 of 3 (digits:classes=5-9) · epoch 1 of 3 · step 40 of 120"


def read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return -1


def read_log(path: Path, tail: _Tail) -> None:
    """Read the log's new complete lines. A resume rewrites the log (the interrupted task's
    records dropped, then new ones appended): a new inode, a smaller size or other bytes just
    before the offset make the tail start over."""
    try:
        st = path.stat()
    except OSError:
        return
    if st.st_ino != tail.inode or st.st_size < tail.offset:
        _restart(tail, st.st_ino)
    if st.st_size == tail.offset:
        return
    with open(path, "rb") as fh:
        back = min(len(tail.mark), tail.offset)
        fh.seek(tail.offset - back)
        chunk = fh.read(st.st_size - tail.offset + back)
        if chunk[:back] != tail.mark[len(tail.mark) - back :]:
            _restart(tail, st.st_ino)
            fh.seek(0)
            chunk = fh.read(st.st_size)
        else:
            chunk = chunk[back:]
    end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
    if not end:
        return
    tail.offset += end
    tail.mark = chunk[max(0, end - 64) : end]
    for line in chunk[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            _add(tail, rec)


def _restart(tail: _Tail, inode: int) -> None:
    fresh = _Tail(started=tail.started, epochs=tail.epochs, inode=inode)
    fresh.manifest_mtime, fresh.snapshots = tail.manifest_mtime, tail.snapshots
    fresh.job_mtime = tail.job_mtime
    tail.__dict__.update(fresh.__dict__)


def _add(tail: _Tail, rec: dict) -> None:
    """One log record: remembered as the latest, and a point of the loss curves (step
    records; a task's epoch averages only where it logged no step, i.e. short tasks)."""
    kind, t = rec.get("kind"), int(rec.get("task", 0))
    tail.last = rec
    if kind == "step" and rec.get("total_steps"):
        tail.stepped.add(t)
        x = t + rec["step"] / rec["total_steps"]
    elif kind == "epoch":
        tail.steps_per_epoch[t] = rec.get("step", 0) / (rec.get("epoch", 0) + 1)
        if t in tail.stepped:
            return
        x = t + (rec.get("epoch", 0) + 1) / max(1, tail.epochs)
    else:
        return
    tail.seen += 1
    if (tail.seen - 1) % tail.stride:
        return
    n = len(tail.xs)
    tail.xs.append(x)
    for k, v in rec.items():
        if k not in NOT_TERMS and isinstance(v, int | float) and not isinstance(v, bool):
            tail.terms.setdefault(k, [None] * n).append(float(v))
    for vals in tail.terms.values():
        if len(vals) == n:
            vals.append(None)
    if len(tail.xs) > MAX_POINTS:
        tail.xs = tail.xs[::2]
        tail.terms = {k: v[::2] for k, v in tail.terms.items()}
        tail.stride *= 2


def progress(job, tail: _Tail) -> Progress:
    n = max(1, len(job.tasks))
    rec, snaps = tail.last or {}, tail.snapshots
    kind = rec.get("kind")
    done = (snaps[-1] + 1) if snaps else 0  # tasks behind the last snapshot
    t = int(rec.get("task", done))
    epoch, step, total = int(rec.get("epoch", 0)), int(rec.get("step", 0)), 0
    if kind == "step":
        total = int(rec.get("total_steps") or 0)
    elif kind == "epoch" and t in tail.steps_per_epoch:
        total = int(round(tail.steps_per_epoch[t] * job.epochs))
    # a phase may span tasks (joint training): it starts after the last snapshot before it
    first = next((s + 1 for s in reversed(snaps) if s < t), 0)
    if kind in ("step", "epoch") and total:
        frac = (first + (t - first + 1) * min(step / total, 1.0)) / n
    else:
        frac = max(done, t + 1 if kind == "task" else 0) / n
    if job.status == "finished":
        frac = 1.0
    end = job.ended if job.status != "running" and job.ended else time.time()
    elapsed = max(0.0, end - job.started)
    f0 = job.done_at_start / n
    eta = None
    if job.status == "running" and frac - f0 > 0.005:
        eta = elapsed * (1 - frac) / (frac - f0)
    name = job.tasks[t] if 0 <= t < len(job.tasks) else "?"
    if kind == "task":
        parts = [f"task {t + 1} of {n} ({name}) done"]
    elif kind is None:
        parts = [f"starting ({done} of {n} tasks done)"]
    else:
        parts = [f"task {t + 1} of {n} ({name})", f"epoch {epoch + 1} of {job.epochs}"]
        if total:
            parts.append(f"step {step} of {total}")
    if job.status != "running":
        parts = [job.status] + (parts if job.status != "finished" else [])
    return Progress(
        status=job.status,
        error=job.error,
        task=t,
        n_tasks=n,
        epoch=epoch,
        epochs=job.epochs,
        step=step,
        total_steps=total,
        fraction=min(max(frac, 0.0), 1.0),
        elapsed=elapsed,
        eta=eta,
        snapshots=list(snaps),
        curves={k: (tail.xs, v) for k, v in tail.terms.items()},
        text=" · ".join(parts),
    )
