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

from lifelong.train.progress import (
    Progress,
    _Tail,
    mtime,
    progress,
    read_log,
    read_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ROOT_ENV = "LIFELONG_TRAIN_ROOT"
JOB_FILE = ".job.json"
LOG_FILE = ".job.log"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

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
    manifest = read_manifest(job.path)
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
    manifest = read_manifest(job.path)
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

_TAILS: dict[str, _Tail] = {}


def poll(job: Job) -> Progress:
    """The job's state now; reads only what changed since the last poll of this job.
    The Job is updated in place when its record changed (a cancel or resume elsewhere)."""
    key = str(job.path)
    m = mtime(job.path / JOB_FILE)
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
        tail.job_mtime = mtime(job.path / JOB_FILE)
    read_log(job.path / "log.jsonl", tail)
    mm = mtime(job.path / "manifest.json")
    if mm != tail.manifest_mtime:
        manifest = read_manifest(job.path)
        if manifest is not None:
            tail.snapshots = [s["after_task"] for s in manifest.get("snapshots", [])]
            tail.manifest_mtime = mm
    return progress(job, tail)
