"""kill -9 a real `python -m lifelong train` at several moments, then --resume: the run ends
with every snapshot, valid checksums, no checkpoint or temporary file left behind, and (seeded,
CPU, one thread) the very same weights and metrics, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lifelong import runs
from lifelong.train import read_log

ROOT = Path(__file__).resolve().parents[2]
TASKS = "digits:classes=0-1,digits:classes=2-3"
CMD = [
    *(sys.executable, "-m", "lifelong", "train", "--model", "lmvae", "--tasks", TASKS),
    *("--epochs", "3", "--batch-size", "32", "--device", "cpu", "--threads", "1"),
    *("--set", "latent_dim=2", "--set", "hidden=16", "--set", "channels=4"),
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _start(out: Path, *extra: str) -> subprocess.Popen:
    """The command, its stderr in a file beside the run (a pipe nobody reads could block it)."""
    err = open(out.parent / f"{out.name}.{time.monotonic_ns()}.err", "w+")
    proc = subprocess.Popen(
        [*CMD, "--out", str(out), *extra], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err
    )
    proc.err_file = err
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    proc.err_file.seek(0)
    return proc.err_file.read()


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> bool:
    """kill -9 the process as soon as ready() holds; False if it ended first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.003)
    proc.kill()
    raise AssertionError("the training process neither reached the moment nor ended")


def _checkpoints(out: Path, task: int) -> list[Path]:
    return sorted((out / ".checkpoints").glob(f"ckpt-t{task:02d}-*.safetensors"))


def _snapshots(out: Path) -> int:
    try:
        return len(runs.open_run(out).snapshots)
    except runs.RunError:
        return -1


def _run(out: Path, *extra: str) -> tuple[int, str]:
    proc = _start(out, *extra)
    proc.wait(timeout=120)
    return proc.returncode, _stderr(proc)


def _resume(out: Path) -> str:
    rc, err = _run(out, "--resume")
    assert rc == 0, err
    return err


def _check_complete(out: Path, reference: Path) -> None:
    run = runs.open_run(out)
    assert run.manifest["status"] == "complete" and run.snapshots == [0, 1]
    for k in run.snapshots:  # every file read back through its sha256 and shape checks
        run.load_model(k)
        run.extra("map", k)
    assert not (out / ".checkpoints").exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    ref = runs.open_run(reference)
    a, b = run.state(1), ref.state(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ from the uninterrupted run"
    assert run.metric("mse") == ref.metric("mse") and run.metric("elbo") == ref.metric("elbo")
    assert [e["type"] for e in run.events] == [e["type"] for e in ref.events]
    log = read_log(out / "log.jsonl")
    epochs = [(r["task"], r["epoch"]) for r in log if r["kind"] == "epoch"]
    assert epochs == [(t, e) for t in (0, 1) for e in range(3)]  # no epoch lost or repeated


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "reference"
    rc, err = _run(out)
    assert rc == 0, err
    return out


def test_killed_four_times_then_resumed_is_bit_identical(tmp_path, reference, capsys):
    out = tmp_path / "run"
    # 1: killed as soon as the manifest exists (nothing trained yet)
    assert _kill_when(_start(out), lambda: (out / "manifest.json").is_file())
    # 2: resumed from the start, killed in task 0 right after its first checkpoint appeared
    proc = _start(out, "--resume")
    assert _kill_when(proc, lambda: bool(_checkpoints(out, 0)))
    assert "going on from the start" in _stderr(proc)
    assert _snapshots(out) == 0
    # 3: resumed from that checkpoint, killed right after snapshot 0 was recorded
    proc = _start(out, "--resume")
    assert _kill_when(proc, lambda: _snapshots(out) == 1)
    assert "going on from the checkpoint after epoch" in _stderr(proc)
    # 4: resumed (from the snapshot, or a checkpoint of task 1), killed in task 1 after a
    # checkpoint of task 1 appeared
    proc = _start(out, "--resume")
    assert _kill_when(proc, lambda: bool(_checkpoints(out, 1)))
    assert _snapshots(out) == 1
    # 5: resumed to the end, from a checkpoint of task 1
    err = _resume(out)
    assert "going on from the checkpoint after epoch" in err and "of task 1" in err, err
    _check_complete(out, reference)
    # a finished run says so in one line instead of training again
    from lifelong.__main__ import main

    assert main([*CMD[3:], "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "finished already" in err, err
