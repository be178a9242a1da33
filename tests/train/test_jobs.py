"""Background training jobs (lifelong.train.jobs): real `python -m lifelong train` processes,
polled, cancelled, resumed and failing, as the Train page drives them."""

from __future__ import annotations

import json
import os
import time

import pytest

from lifelong import runs
from lifelong.data import DataError
from lifelong.explore import overview
from lifelong.train import jobs

TINY = {"latent_dim": 2, "hidden": 16, "channels": 4}
TWO = "digits:classes=0-1,digits:classes=2-3"
THREE = "digits:classes=0-1,digits:classes=2-3,digits:classes=4-5"


def wait(job, until, timeout=120.0):
    """Poll every 50 ms until `until(progress)`; returns the last progress."""
    deadline = time.monotonic() + timeout
    while True:
        p = jobs.poll(job)
        if until(p):
            return p
        assert time.monotonic() < deadline, f"{job.name}: timed out at {p.text}"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie left for its parent


def test_a_short_job_runs_to_the_end_and_its_run_opens(tmp_path):
    job = jobs.start(
        "vae", TWO, 1, "short", root=tmp_path, device="cpu", overrides=TINY, session="s1"
    )
    assert job.command[2:5] == ["lifelong", "train", "--model"] and "--threads" in job.command
    assert job.command[job.command.index("--threads") + 1] == str(jobs.free_threads())
    seen = [jobs.poll(job)]
    assert seen[0].status == "running" and seen[0].n_tasks == 2
    p = wait(job, lambda p: seen.append(p) or p.status != "running")
    assert p.status == "finished", p.error
    assert p.fraction == 1.0 and p.snapshots == [0, 1] and p.eta is None
    assert p.epochs == 1 and p.task == 1 and p.text == "finished"
    assert {"total", "rec", "kl"} <= set(p.curves)
    xs, ys = p.curves["total"]
    assert len(xs) == len(ys) >= 2 and all(a < b for a, b in zip(xs, xs[1:], strict=False))
    fractions = [q.fraction for q in seen]
    assert fractions == sorted(fractions)  # progress never goes back
    run = runs.open_run(tmp_path / "short")
    assert run.snapshots == [0, 1] and run.manifest["status"] == "complete"
    assert run.manifest["config"]["latent_dim"] == 2
    # the record lets another session (or a reloaded page) find it again
    record = json.loads((tmp_path / "short" / jobs.JOB_FILE).read_text())
    assert record["status"] == "finished" and record["session"] == "s1" and record["pid"]
    assert [j.name for j in jobs.list_jobs(tmp_path, "s1")] == ["short"]
    assert jobs.list_jobs(tmp_path, "someone-else") == []
    jobs._TAILS.clear()  # a fresh process reattaching
    again = jobs.poll(jobs.list_jobs(tmp_path)[0])
    assert again.status == "finished" and again.snapshots == [0, 1]
    assert again.curves["total"][1] == ys
    assert not jobs.is_training(tmp_path / "short")
    img = overview.snapshot_preview(tmp_path / "short", 1, n=4)
    assert img.dtype.name == "uint8" and img.shape[1] >= 4 * 28 and img.shape[0] >= 2 * 28


def test_cancel_midway_then_resume_to_the_end(tmp_path):
    job = jobs.start(
        "vae", THREE, 30, "long", root=tmp_path, device="cpu", batch_size=16, overrides=TINY
    )
    p = wait(job, lambda p: p.snapshots or p.status != "running")
    assert p.status == "running" and p.snapshots == [0], p.error
    assert jobs.is_training(tmp_path / "long")
    # reattach as another app process would: no Popen object, only the record and /proc
    proc = jobs._PROCS.pop(job.pid)
    jobs._TAILS.clear()
    job = jobs.list_jobs(tmp_path)[0]
    p = jobs.poll(job)
    assert p.status == "running" and 0.3 < p.fraction < 1 and p.snapshots == [0]
    assert p.eta is not None and p.eta > 0
    job = jobs.cancel(job, grace=5.0)
    proc.wait(10)  # reap it (a real other process would have its own parent do this)
    assert job.status == "cancelled" and gone(job.pid)
    p = jobs.poll(job)
    assert p.status == "cancelled" and p.error is None
    snaps = runs.open_run(tmp_path / "long").snapshots
    assert snaps in ([0], [0, 1])  # cancelled before the last task finished
    job = jobs.resume(job)
    assert job.command[-1] == "--resume" and job.attempts == 2 and job.status == "running"
    with pytest.raises(jobs.JobError, match="still running"):
        jobs.resume(job)
    p = wait(job, lambda p: p.status != "running", timeout=180)
    assert p.status == "finished", p.error
    assert p.snapshots == [0, 1, 2] and p.fraction == 1.0
    run = runs.open_run(tmp_path / "long")
    assert run.snapshots == [0, 1, 2] and run.manifest["status"] == "complete"
    log = [json.loads(line) for line in (tmp_path / "long" / "log.jsonl").read_text().splitlines()]
    epochs = [(r["task"], r["epoch"]) for r in log if r["kind"] == "epoch"]
    assert epochs == [(t, e) for t in range(3) for e in range(30)]  # nothing twice
    assert p.curves["total"][0][-1] == pytest.approx(3.0)


def test_cancel_of_a_child_process_of_this_process(tmp_path):
    job = jobs.start(
        "vae", TWO, 200, "stop", root=tmp_path, device="cpu", batch_size=16, overrides=TINY
    )
    wait(job, lambda p: p.curves or p.status != "running")
    job = jobs.cancel(job, grace=5.0)
    # SIGTERM ends the CLI like Ctrl-C: exit 130 and the manifest says "interrupted"
    assert job.status == "cancelled" and gone(job.pid) and job.returncode == 130
    assert json.loads((tmp_path / "stop" / "manifest.json").read_text())["status"] == "interrupted"
    assert job.pid not in jobs._PROCS  # reaped


def test_a_failing_job_reports_its_one_line_error(tmp_path):
    # NaN: a learning rate of 1e30 blows the first step up; the CLI exits non-zero with
    # one line, after a progress bar the line shares (tqdm's \r)
    job = jobs.start(
        "vae", TWO, 1, "nan", root=tmp_path, device="cpu", overrides={**TINY, "lr": 1e30}
    )
    p = wait(job, lambda p: p.status != "running")
    assert p.status == "failed" and p.text == "failed · starting (0 of 2 tasks done)"
    assert p.error.startswith("loss became nan at task 0, epoch 0, step 1")
    assert "\n" not in p.error and job.returncode == 2
    # data missing at run time (the spec itself is valid): nothing is written but the job
    job = jobs.start("vae", "mnist:path=/nonexistent", 1, "nodata", root=tmp_path)
    p = wait(job, lambda p: p.status != "running")
    assert p.status == "failed" and p.error == "dataset directory not found: /nonexistent"
    assert not runs.find_runs(tmp_path / "nodata")
    assert sorted(os.listdir(tmp_path / "nodata")) == [jobs.JOB_FILE, jobs.LOG_FILE]


def test_bad_input_starts_nothing(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'digitz'"):
        jobs.start("vae", "digitz", 1, "a", root=tmp_path)
    with pytest.raises(ValueError, match="unknown option 'latent'"):
        jobs.start("vae", TWO, 1, "a", root=tmp_path, overrides=["latent=3"])
    with pytest.raises(ValueError, match="unknown model 'vea'"):
        jobs.start("vea", TWO, 1, "a", root=tmp_path)
    with pytest.raises(jobs.JobError, match="run name"):
        jobs.start("vae", TWO, 1, "../escape", root=tmp_path)
    with pytest.raises(ValueError, match="different image shapes"):
        jobs.start("vae", "digits,digits:size=32", 1, "a", root=tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "manifest.json").write_text("{}")
    with pytest.raises(jobs.JobError, match="already holds a run"):
        jobs.start("vae", TWO, 1, "taken", root=tmp_path)


def test_train_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.TRAIN_ROOT_ENV, str(tmp_path))
    assert jobs.train_root() == tmp_path.resolve()
    monkeypatch.delenv(jobs.TRAIN_ROOT_ENV)
    assert jobs.train_root() == jobs.ROOT / "runs"
