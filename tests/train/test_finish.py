"""Always finishable: a run killed after its last snapshot was recorded but before it marked
itself complete is finished by --resume (status complete, checkpoints gone, the log's last
task record in place), bit for bit the run an uninterrupted training makes."""

from __future__ import annotations

import json

import pytest

from lifelong import runs
from lifelong.__main__ import main
from lifelong.train import TrainingError, read_log, train
from tests.conftest import TINY_NETS, TINY_TASKS, tiny_args


class Killed(BaseException):
    """kill -9 in-process: nothing in the trainer catches it, so nothing more is written."""


def _args(out, **kw):
    return tiny_args(out, **{"epochs": 2, "map_points": 0, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train(_args(tmp_path_factory.mktemp("finish") / "ref"), callbacks=[])


def _kill_after(monkeypatch, when):
    """runs.atomic_write that dies right after (`when` gets the manifest about to be
    written; "after") or instead of (returns "before") the first manifest write it picks."""
    real = runs.atomic_write

    def write(path, data):
        moment = when(json.loads(data)) if path.name == "manifest.json" else None
        if moment == "before":
            raise Killed
        real(path, data)
        if moment == "after":
            raise Killed

    monkeypatch.setattr(runs, "atomic_write", write)


def _last_snapshot_recorded(m):
    return "after" if len(m["snapshots"]) == 2 and m["status"] == "running" else None


def _marking_complete(m):
    return "before" if m["status"] == "complete" else None


@pytest.mark.parametrize("when", [_last_snapshot_recorded, _marking_complete])
def test_a_run_killed_before_it_was_marked_complete_is_finished_by_resume(
    tmp_path, reference, monkeypatch, capsys, when
):
    out = tmp_path / "run"
    _kill_after(monkeypatch, when)
    with pytest.raises(Killed):
        train(_args(out), callbacks=[])
    monkeypatch.undo()
    stuck = runs.open_run(out)
    assert stuck.snapshots == [0, 1] and stuck.manifest["status"] == "running"
    with pytest.raises(TrainingError, match="use --resume"):
        train(_args(out), callbacks=[])
    capsys.readouterr()
    train(_args(out, resume=True), callbacks=[])
    assert "every task has its snapshot; finishing the run" in capsys.readouterr().err
    run, ref = runs.open_run(out), runs.open_run(reference)
    assert run.manifest["status"] == "complete" and "checkpoint" not in run.manifest
    assert not (out / ".checkpoints").exists()
    for k in (0, 1):
        name = f"task-0{k}.safetensors"
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    assert run.manifest["metrics"] == ref.manifest["metrics"] and run.events == ref.events
    tasks = [r for r in read_log(out / "log.jsonl") if r["kind"] == "task"]
    ref_tasks = [r for r in read_log(reference / "log.jsonl") if r["kind"] == "task"]
    drop = ("time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in tasks] == [
        {k: v for k, v in r.items() if k not in drop} for r in ref_tasks
    ]
    with pytest.raises(TrainingError, match="finished already"):
        train(_args(out, resume=True), callbacks=[])


def test_the_command_line_finishes_it_too(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _kill_after(monkeypatch, _marking_complete)
    with pytest.raises(Killed):
        train(_args(out), callbacks=[])
    monkeypatch.undo()
    argv = [
        *("train", "--model", "lmvae", "--tasks", ",".join(TINY_TASKS), "--out", str(out)),
        *("--device", "cpu", "--resume"),
        *(a for k, v in TINY_NETS.items() for a in ("--set", f"{k}={v}")),
    ]
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "finishing the run" in captured.err and f"run written to {out}" in captured.out
    assert runs.open_run(out).manifest["status"] == "complete"
