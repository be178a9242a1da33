"""--out and the files of others: the trainer refuses a file or a folder of the user's (and
touches nothing in it), accepts a new or empty folder (or one holding only the app's job
files), and deletes only the files it wrote itself, never others in the run's .checkpoints."""

from __future__ import annotations

import pytest

from lifelong import runs
from lifelong.train import TrainingError, train
from lifelong.train import checkpoint as ckpt_mod
from tests.conftest import StopAt, tiny_args


def _args(out, **kw):
    return tiny_args(out, **{"epochs": 2, "map_points": 0, "tasks": ["digits:classes=0-1"], **kw})


def _listing(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _users_folder(tmp_path):
    folder = tmp_path / "mine"
    (folder / ".checkpoints").mkdir(parents=True)
    (folder / ".checkpoints" / "keep.txt").write_text("the user's")
    (folder / "log.jsonl").write_text("the user's log\n")
    return folder


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_that_is_not_a_run_is_refused_untouched(tmp_path, resume):
    folder = _users_folder(tmp_path)
    before = _listing(folder)
    match = "no manifest.json" if resume else "is a folder that is not a run"
    with pytest.raises(TrainingError, match=match):
        train(_args(folder, resume=resume), callbacks=[])
    assert _listing(folder) == before


@pytest.mark.parametrize("resume", [False, True])
def test_a_file_is_refused(tmp_path, resume):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(TrainingError, match="is a file, not a folder"):
        train(_args(path, resume=resume), callbacks=[])
    assert path.read_text() == "x"


def test_an_empty_folder_or_one_with_only_job_files_is_used(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runs.open_run(train(_args(empty, epochs=1), callbacks=[])).snapshots == [0]
    job = tmp_path / "job"
    job.mkdir()
    (job / ".job.json").write_text("{}")
    (job / ".job.log").write_text("starting\n")
    train(_args(job, epochs=1), callbacks=[])
    assert (job / ".job.log").read_text() == "starting\n"


def test_resume_and_finish_delete_only_the_trainers_own_files(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_args(out), callbacks=[StopAt(0, 1)])
    assert ckpt_mod.listed(out)
    theirs = {
        ".checkpoints/keep.txt": b"keep",
        ".checkpoints/ckpt-notes.txt": b"keep",
        ".notes.tmp": b"keep",
        ".draft.txt.tmp1": b"keep",
        "..job.json.tmp1": b"keep",  # the app's job record being written
    }
    for name, data in theirs.items():
        (out / name).write_bytes(data)
    (out / ".manifest.json.tmp99").write_bytes(b"cut")  # a temporary a kill left behind
    train(_args(out, resume=True), callbacks=[])
    assert runs.open_run(out).manifest["status"] == "complete"
    for name, data in theirs.items():
        assert (out / name).read_bytes() == data, name
    assert not (out / ".manifest.json.tmp99").exists()
    assert sorted(p.name for p in (out / ".checkpoints").iterdir()) == [
        "ckpt-notes.txt",
        "keep.txt",
    ]


def test_checkpoints_in_a_linked_folder_are_not_the_runs(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name = "ckpt-t00-e0001-0123456789abcdef.safetensors"
    (elsewhere / name).write_bytes(b"not ours")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoints").symlink_to(elsewhere)
    assert ckpt_mod.listed(run) == []
    ckpt_mod.remove_all(run)
    ckpt_mod.clean_partial(run)
    assert (elsewhere / name).read_bytes() == b"not ours"
