"""A full disk (or any failed write) while training: one line that says what to do, the folder
stays a valid, resumable run (status "interrupted", or "running" when even that could not be
written), no cut temporary is left, and --resume after space is freed ends with the very same
snapshot bytes, metrics and log as an uninterrupted run (seeded, CPU, one thread)."""

from __future__ import annotations

import errno
import json
import os

import pytest

from lifelong import runs
from lifelong.__main__ import main
from lifelong.train import TrainingError, callbacks, read_log, train
from tests.conftest import TINY_NETS, TINY_TASKS, tiny_args

FULL = "No space left on device (free space and resume with --resume)"


def _args(out, **kw):
    """Two tasks of two epochs: a checkpoint in each task, so a tiny run makes 16 atomic
    writes (manifests, checkpoints, the latent maps, the evaluation data, snapshots)."""
    return tiny_args(out, **{"epochs": 2, "map_points": 64, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train(_args(tmp_path_factory.mktemp("full") / "ref"), callbacks=[])


class DiskFull:
    """runs.atomic_write that fails from its n-th call (only that one unless `persistent`),
    the way a full disk does: the temporary file is cut, then OSError(ENOSPC)."""

    def __init__(self, n: int, persistent: bool = False, code: int = errno.ENOSPC):
        self.real, self.n, self.persistent, self.code, self.calls = (
            runs.atomic_write,
            n,
            persistent,
            code,
            0,
        )

    def __call__(self, path, data):
        self.calls += 1
        if self.calls == self.n or (self.persistent and self.calls > self.n):
            path.with_name(f".{path.name}.tmp{os.getpid()}").write_bytes(data[: len(data) // 2])
            raise OSError(self.code, os.strerror(self.code), str(path))
        return self.real(path, data)


def _temporaries(out):
    return [
        p.name
        for d in (out, out / ".checkpoints")
        if d.is_dir()
        for p in d.iterdir()
        if ".tmp" in p.name
    ]


def _same_as(out, ref) -> None:
    run = runs.open_run(out)
    assert run.manifest["status"] == "complete" and run.snapshots == [0, 1]
    assert not (out / ".checkpoints").exists() and not _temporaries(out)
    for name in ("task-00.safetensors", "task-01.safetensors", "map-01.safetensors"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    ref_run = runs.open_run(ref)
    assert run.manifest["metrics"] == ref_run.manifest["metrics"]
    assert run.events == ref_run.events

    def records(path):  # what was logged, without the wall-clock fields
        drop = {"time", "seconds", "images_per_s"}
        return [{k: v for k, v in r.items() if k not in drop} for r in read_log(path / "log.jsonl")]

    assert records(out) == records(ref)


@pytest.mark.parametrize(
    "n, persistent",
    [
        (2, False),
        (3, False),
        (6, False),
        (8, True),
        (9, False),
        (12, True),
        (14, False),
        (16, True),
    ],
)
def test_full_disk_at_the_nth_write_then_resume_is_bit_identical(
    tmp_path, reference, monkeypatch, n, persistent
):
    out = tmp_path / "run"
    monkeypatch.setattr(runs, "atomic_write", DiskFull(n, persistent))
    with pytest.raises(TrainingError) as info:
        train(_args(out), callbacks=[])
    monkeypatch.undo()  # space freed
    assert str(info.value) == f"cannot write {out}: {FULL}"
    assert not _temporaries(out)  # the cut file does not keep the space it took
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == ("running" if persistent else "interrupted")
    runs.open_run(out)  # a valid run as it stands
    train(_args(out, resume=True), callbacks=[])
    _same_as(out, reference)


def test_full_disk_at_the_first_write_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    monkeypatch.setattr(runs, "atomic_write", DiskFull(1, persistent=True))
    with pytest.raises(TrainingError) as info:
        train(_args(out), callbacks=[])
    assert str(info.value) == f"cannot write {out}: No space left on device"
    assert not out.exists()


def test_full_disk_while_logging_then_resume(tmp_path, reference, monkeypatch):
    """log.jsonl is appended with open(); a failure there (the 5th record: task 0's second
    epoch) is handled the same way."""
    real, calls = open, []

    def failing_open(path, mode="r", *a, **kw):
        if "a" in mode:
            calls.append(path)
            if len(calls) == 5:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, mode, *a, **kw)

    out = tmp_path / "run"
    monkeypatch.setattr(callbacks, "open", failing_open, raising=False)
    with pytest.raises(TrainingError, match="free space and resume"):
        train(_args(out, log_every=1000), callbacks=[])
    monkeypatch.undo()
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    train(_args(out, resume=True, log_every=1000), callbacks=[])
    ref = train(_args(tmp_path / "ref", log_every=1000), callbacks=[])
    _same_as(out, ref)


def test_cli_says_it_in_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = [
        *("train", "--model", "lmvae", "--tasks", ",".join(TINY_TASKS), "--out", str(out)),
        *("--epochs", "2", "--batch-size", "64", "--device", "cpu", "--threads", "1"),
        *(a for k, v in TINY_NETS.items() for a in ("--set", f"{k}={v}")),
    ]
    monkeypatch.setattr(runs, "atomic_write", DiskFull(9))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: cannot write {out}: {FULL}", err
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert runs.open_run(out).manifest["status"] == "complete"


def test_a_read_only_folder_says_what_to_fix(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(runs, "atomic_write", DiskFull(4, persistent=True, code=errno.EROFS))
    with pytest.raises(TrainingError) as info:
        train(_args(out), callbacks=[])
    reason = os.strerror(errno.EROFS)
    assert str(info.value) == f"cannot write {out}: {reason} (fix that and resume with --resume)"
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
