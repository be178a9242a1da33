"""Background training jobs for the app's Train page (DESIGN.md: "Training never runs on the
script thread: it is a separate process running the same command line").

    job = start("lmvae", "digits:classes=0-4,digits:classes=5-9", epochs=3, session=sid)
    poll(job)    -> Progress: status, task k of n, epoch, step, fraction, ETA, loss curves
    cancel(job)  -> SIGTERM to its process group, SIGKILL after a grace period
    resume(job)  -> `train ... --resume` on the same folder (continues after the last snapshot)

A job is `sys.executable -m lifelong train ... --out ROOT/NAME` started with
subprocess.Popen(start_new_session=True) (fork + exec: nothing of the app's process, CUDA
included, lives on in it). Its record is RUN/.job.json (pid, command, session, start time,
status) and its stdout/stderr go to RUN/.job.log: dot-files, so archives and the run format
ignore them. Any process can list the jobs under a root and reattach to them (a page reload, a
second tab); the Popen objects this process started are kept in _PROCS so they get reaped.

Polling is incremental: log.jsonl is read from the offset the last poll stopped at, the
manifest only when its mtime changes, the record only when its mtime changes (well under 1 ms
per poll; bench/bench_jobs.py). No Streamlit here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ROOT_ENV = "LIFELONG_TRAIN_ROOT"
JOB_FILE = ".job.json"
LOG_FILE = ".job.log"
MAX_POINTS = 400  # per loss curve; older points are thinned (every other one) beyond this
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NOT_TERMS = {"kind", "time", "task", "n_tasks", "epoch", "step", "total_steps", "_new_task"}
NOT_TERMS |= {"seconds", "images_per_s"}

_PROCS: dict[int, subprocess.Popen] = {}  # pid -> the processes this process started


class JobError(ValueError):
    """A job that cannot start or resume; one line, shown to the user as is."""


def train_root() -> Path:
    """Where jobs write their runs: $LIFELONG_TRAIN_ROOT, else runs/ beside lifelong/."""
    env = os.environ.get(TRAIN_ROOT_ENV)
    return Path(env).expanduser().resolve() if env else ROOT / "runs"


def free_threads() -> int:
    """Torch threads for a job: every core this process may use but one (left to the app)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, n - 1)


@dataclass
class Job:
    """A job's record (RUN/.job.json) plus its folder."""

    path: Path
    name: str
    command: list[str]
    pid: int
    session: str = ""
    started: float = 0.0
    status: str = "running"  # running / finished / failed / cancelled
    family: str = ""
    tasks: list[str] = field(default_factory=list)
    epochs: int = 1
    attempts: int = 1
    done_at_start: int = 0  # tasks already snapshotted when this attempt started (resume)
    cancel_requested: bool = False
    ended: float | None = None
    returncode: int | None = None
    error: str | None = None

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path / f".{JOB_FILE}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path / JOB_FILE)


def load(path: str | Path) -> Job | None:
    """The job whose run folder is `path`, or None if it has no (readable) record."""
    path = Path(path)
    try:
        data = json.loads((path / JOB_FILE).read_text())
        return Job(path=path, **data)
    except (OSError, ValueError, TypeError):
        return None


def list_jobs(root: str | Path | None = None, session: str | None = None) -> list[Job]:
    """Jobs under `root` (default train_root()), oldest first; only `session`'s if given."""
    _reap()
    root = Path(root) if root else train_root()
    found = []
    if root.is_dir():
        for p in root.iterdir():
            job = load(p) if (p / JOB_FILE).is_file() else None
            if job and (session is None or job.session == session):
                found.append(job)
    return sorted(found, key=lambda j: j.started)


def is_training(run_dir: str | Path) -> bool:
    """Whether a job is training into this run folder right now (the run picker's marker)."""
    if not (Path(run_dir) / JOB_FILE).is_file():
        return False
    job = load(run_dir)
    return job is not None and job.status == "running" and _alive(job)


# --------------------------------------------------------------------------------- starting


def command(
    model: str,
    tasks: str,
    epochs: int,
    out: Path,
    device: str = "auto",
    seed: int = 0,
    batch_size: int = 128,
    overrides: dict | None = None,
    threads: int | None = None,
) -> list[str]:
    """The command line of a job (the CLI of DESIGN.md, exactly as a user would type it)."""
    cmd = [sys.executable, "-m", "lifelong", "train", "--model", model, "--tasks", tasks]
    cmd += ["--epochs", str(epochs), "--out", str(out), "--device", device]
    cmd += ["--seed", str(seed), "--batch-size", str(batch_size)]
    cmd += ["--threads", str(threads or free_threads())]
    for k, v in (overrides or {}).items():
        cmd += ["--set", f"{k}={_format(v)}"]
    return cmd


def _format(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    return str(v)


def default_name(model: str) -> str:
    return f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def validate(model: str, tasks: str, overrides: dict | list | None = None) -> tuple[list, dict]:
    """(task specs, typed overrides), or a one-line DataError / ValueError: what the CLI
    would refuse is refused here, before any process starts."""
    from lifelong import models
    from lifelong.data import parse_tasks
    from lifelong.train.trainer import build_config, parse_overrides

    models.family(model)
    specs = parse_tasks(tasks)
    if isinstance(overrides, dict):
        overrides = [f"{k}={_format(v)}" for k, v in overrides.items()]
    typed = parse_overrides(model, list(overrides or []))
    build_config(model, specs, typed)  # image shapes agree, the config validates
    return specs, typed


def start(
    model: str,
    tasks: str,
    epochs: int = 3,
    name: str | None = None,
    *,
    root: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    batch_size: int = 128,
    overrides: dict | list | None = None,
    session: str = "",
    threads: int | None = None,
) -> Job:
    """Validate, then start `python -m lifelong train ...` into ROOT/NAME; returns its Job.
    Raises JobError (or the data/option error, one line) and starts nothing on bad input."""
    specs, typed = validate(model, tasks, overrides)
    if int(epochs) < 1:
        raise JobError("epochs must be at least 1")
    name = (name or "").strip() or default_name(model)
    if not NAME.match(name):
        raise JobError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out = (Path(root) if root else train_root()) / name
    if (out / "manifest.json").exists():
        raise JobError(f"{name} already holds a run: choose another name (or resume its job)")
    old = load(out)
    if old is not None and old.status == "running" and _alive(old):
        raise JobError(f"{name} is being trained by another job")
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(model, ",".join(specs), epochs, out, device, seed, batch_size, typed, threads)
    job = Job(out, name, cmd, 0, session, family=model, tasks=specs, epochs=int(epochs))
    return _launch(job, fresh_log=True)


def _launch(job: Job, fresh_log: bool) -> Job:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with open(job.path / LOG_FILE, "wb" if fresh_log else "ab") as log:
        if not fresh_log:
            log.write(f"\n--- resumed {datetime.now().isoformat(timespec='seconds')}\n".encode())
            log.flush()
        proc = subprocess.Popen(
            job.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: cancel() signals the whole job
        )
    _PROCS[proc.pid] = proc
    job.pid, job.started, job.status = proc.pid, time.time(), "running"
    job.ended = job.returncode = job.error = None
    job.cancel_requested = False
    job.save()
    _TAILS.pop(str(job.path), None)
    return job


def resume(job: Job, threads: int | None = None) -> Job:
    """Start `train ... --resume` on the job's folder: it continues after the last complete
    snapshot (a job that failed before writing any run starts again from scratch)."""
    job = load(job.path) or job
    if job.status == "running" and _alive(job):
        raise JobError(f"{job.name} is still running")
    cmd = [c for c in job.command if c != "--resume"]
    if threads:
        i = cmd.index("--threads")
        cmd[i + 1] = str(threads)
    manifest = _read_manifest(job.path)
    snaps = [s["after_task"] for s in (manifest or {}).get("snapshots", [])]
    if manifest is not None:
        cmd.append("--resume")
    job.command = cmd
    job.attempts += 1
    job.done_at_start = (snaps[-1] + 1) if snaps else 0
    return _launch(job, fresh_log=False)


# ---------------------------------------------------------------------------------- process


def _reap() -> None:
    for pid, proc in list(_PROCS.items()):
        if proc.poll() is not None:
            _PROCS.pop(pid, None)
            _EXITED[pid] = proc.returncode


_EXITED: dict[int, int] = {}  # pid -> return code of reaped children of this process


def _alive(job: Job) -> bool:
    """Whether the job's process still runs (reaping it if it is this process's child)."""
    proc = _PROCS.get(job.pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _PROCS.pop(job.pid, None)
        _EXITED[job.pid] = proc.returncode
        return False
    if job.pid in _EXITED or job.pid <= 0:
        return False
    try:  # started by another (or an earlier) app process: check the pid is still that job
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(job.pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    out = job.command[job.command.index("--out") + 1] if "--out" in job.command else job.name
    return out.encode() in cmdline  # empty for a zombie, another one for a reused pid


def _finish(job: Job) -> Job:
    """Record how a job that is no longer alive ended: finished, cancelled or failed."""
    rc = _EXITED.get(job.pid)
    manifest = _read_manifest(job.path)
    complete = (manifest or {}).get("status") == "complete"
    if job.cancel_requested and not complete:
        job.status, job.error = "cancelled", None
    elif (rc == 0 or rc is None) and complete:
        job.status, job.error = "finished", None
    else:
        job.status, job.error = "failed", _error_line(job.path, rc)
    job.returncode, job.ended = rc, time.time()
    job.save()
    return job


def _error_line(path: Path, rc: int | None) -> str:
    """The CLI's one-line `error: ...` (or the last line of a traceback) from the job's log."""
    try:
        with open(path / LOG_FILE, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 8192))
            tail = fh.read().decode(errors="replace")
    except OSError:
        tail = ""
    lines = [s.strip() for s in re.split(r"[\r\n]", tail) if s.strip()]
    for line in reversed(lines):
        if "error: " in line:  # maybe after a progress bar that \r did not clear
            return line[line.index("error: ") + len("error: ") :]
    if rc is not None and rc < 0:
        return f"the training process was killed by signal {-rc}"
    if lines and not lines[-1].startswith(("task ", "---")):
        return lines[-1][:300]
    return f"the training process ended with exit status {rc} (see {LOG_FILE})"


def cancel(job: Job, grace: float = 5.0) -> Job:
    """SIGTERM the job's process group, SIGKILL it after `grace` seconds. The run stays
    resumable: snapshots and manifests are written atomically, and --resume redoes the
    interrupted task from the last complete snapshot."""
    job = load(job.path) or job
    if not _alive(job):
        return _finish(job) if job.status == "running" else job
    job.cancel_requested = True
    job.save()
    _signal(job.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(job) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(job):
        _signal(job.pid, signal.SIGKILL)
        proc = _PROCS.get(job.pid)
        if proc is not None:
            proc.wait(5)
        while _alive(job) and time.monotonic() < deadline + 5:
            time.sleep(0.02)
    return _finish(job)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the job's pid
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


# ---------------------------------------------------------------------------------- polling


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


_TAILS: dict[str, _Tail] = {}


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


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return -1


def poll(job: Job) -> Progress:
    """The job's state now; reads only what changed since the last poll of this job.
    The Job is updated in place when its record changed (a cancel or resume elsewhere)."""
    key = str(job.path)
    m = _mtime(job.path / JOB_FILE)
    tail = _TAILS.get(key)
    if tail is None or m != tail.job_mtime:
        fresh = load(job.path)
        if fresh is not None:
            job.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "path"})
    if tail is None or tail.started != job.started:
        tail = _TAILS[key] = _Tail(started=job.started, epochs=job.epochs)
    tail.job_mtime = m
    if job.status == "running" and not _alive(job):
        _finish(job)
        tail.job_mtime = _mtime(job.path / JOB_FILE)
    _read_log(job.path / "log.jsonl", tail)
    mm = _mtime(job.path / "manifest.json")
    if mm != tail.manifest_mtime:
        manifest = _read_manifest(job.path)
        if manifest is not None:
            tail.snapshots = [s["after_task"] for s in manifest.get("snapshots", [])]
            tail.manifest_mtime = mm
    return _progress(job, tail)


def _read_log(path: Path, tail: _Tail) -> None:
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


def _progress(job: Job, tail: _Tail) -> Progress:
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


def preview(run_dir: str | Path, after_task: int, n: int = 6, scale: int = 1):
    """Originals over reconstructions of the first `n` test images of the task a snapshot
    was taken after: RGB uint8, for the Train page's thumbnail row (cache it by file)."""
    from lifelong import data as ldata
    from lifelong import runs
    from lifelong.explore import overview

    run = runs.open_run(run_dir)
    model = run.load_model(after_task)
    test = ldata.load_task(run.tasks[after_task], "test", run.manifest.get("seed", 0))
    row = overview.task_reconstructions(model, [test], n)[0]
    return overview.pair_grid(row["x"], row["recon"], scale=scale)
