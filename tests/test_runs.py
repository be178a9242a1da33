"""The run format: round trip, validation and clear errors for damaged or foreign folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lifelong import runs
from lifelong.train import train
from tests.conftest import tiny_args


def _tiny_run(out, model: str, **overrides):
    """One epoch on two digit tasks with tiny networks, into `out`."""
    nets = {"latent_dim": 3, "hidden": 16, "channels": 4}
    train(tiny_args(out, model=model, overrides={**nets, **overrides}), callbacks=[])
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("r") / "run", "lmvae")


@pytest.fixture
def copy(run_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run_dir, dst)
    return dst


def test_round_trip_restores_the_model(run_dir):
    run = runs.open_run(run_dir)
    model = run.load_model()
    assert not model.training
    again = runs.open_run(run_dir).load_model(1)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert run.load_model(0).task_experts()[0] in model.experts()


def test_truncated_snapshot_is_named(copy):
    f = copy / "task-01.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(runs.RunError, match="task-01.safetensors is truncated"):
        runs.open_run(copy)


def test_altered_bytes_fail_the_checksum(copy):
    f = copy / "task-00.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(runs.RunError, match="task-00.safetensors is corrupt"):
        runs.open_run(copy).load_model(0)


def test_foreign_file_is_never_unpickled(copy):
    import pickle

    f = copy / "task-00.safetensors"
    payload = pickle.dumps({"not": "weights"})
    f.write_bytes(payload)
    m = json.loads((copy / "manifest.json").read_text())
    import hashlib

    m["snapshots"][0].update(sha256=hashlib.sha256(payload).hexdigest(), bytes=len(payload))
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runs.RunError, match="not a valid safetensors file"):
        runs.open_run(copy).load_model(0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="other/9"), "unsupported format 'other/9'"),
        (lambda m: m.update(family="nosuch"), "unknown model family 'nosuch'"),
        (lambda m: m["config"].update(latent_dim=7), "has shape"),
        (lambda m: m["config"].update(bogus=1), "config does not fit lmvae"),
        (lambda m: m.pop("tasks"), "lacks 'tasks'"),
    ],
)
def test_manifest_problems_are_named(copy, edit, message):
    m = json.loads((copy / "manifest.json").read_text())
    edit(m)
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runs.RunError, match=message):
        runs.open_run(copy).load_model()


def test_missing_or_unreadable_manifest(tmp_path, copy):
    with pytest.raises(runs.RunError, match="no manifest.json"):
        runs.open_run(tmp_path)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(runs.RunError, match="unreadable"):
        runs.open_run(copy)
    (copy / "task-01.safetensors").unlink()
    assert runs.find_runs(copy.parent) == [copy]


def test_snapshot_bytes_are_reproducible(tmp_path):
    """Saving the same weights twice gives the same file (pretrained/ regenerations must not
    add bytes to git history when nothing changed)."""
    from safetensors import safe_open

    from lifelong.models import build
    from lifelong.models.lmvae import LMVAEConfig

    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4))
    files = []
    for i in range(2):
        d = tmp_path / str(i)
        d.mkdir()
        runs.save_snapshot(d, {"snapshots": []}, model, 0, {})
        files.append((d / "task-00.safetensors").read_bytes())
    assert files[0] == files[1]
    with safe_open(str(tmp_path / "0" / "task-00.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["lifelong-run"])
    assert meta["family"] == "lmvae" and meta["config"]["latent_dim"] == 3


def test_a_tensor_equal_to_a_previous_one_is_stored_as_an_alias(tmp_path):
    """LGM's teacher after task 1 is the student after task 0: snapshot 1 lists the teacher's
    tensors as aliases of the previous student's instead of storing them again, and the
    loaded teacher is bit-identical to the loaded previous student. A broken alias is named."""
    out = _tiny_run(tmp_path / "lgm", "lgm", grow_discrete=False)
    run = runs.open_run(out)
    entry = run.manifest["snapshots"][1]
    aliases = entry["aliases"]
    first, second = run.load_model(0), run.load_model(1)
    teacher = second.teacher.state_dict()
    assert set(aliases) == {f"teacher.{k}" for k in teacher}
    assert all(src == "student." + name.removeprefix("teacher.") for name, src in aliases.items())
    for k, v in first.student.state_dict().items():
        assert torch.equal(teacher[k], v), k
    assert entry["tensors"] < len(second.state_dict()) - len(teacher) + 1
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["snapshots"][1]["aliases"]["teacher.enc_body.net.0.weight"] = "student.nothing"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runs.RunError, match="aliases teacher.enc_body.net.0.weight to student"):
        runs.open_run(broken).load_model(1)


def test_digest_tells_shapes_and_dtypes_apart():
    zeros = torch.zeros(64)
    assert runs.tensor_digest(zeros) == runs.tensor_digest(torch.zeros(64))
    assert runs.tensor_digest(zeros) != runs.tensor_digest(torch.zeros(8, 8))
    assert runs.tensor_digest(zeros) != runs.tensor_digest(torch.zeros(32, dtype=torch.float64))


# -- untrusted run folders (issue 14): confinement, types, sizes ----------------------------


def _copy(tiny_run, tmp_path, name="copy"):
    import shutil

    out = tmp_path / name
    shutil.copytree(tiny_run, out)
    return out


def _edit(out, change):
    import json

    m = json.loads((out / "manifest.json").read_text())
    change(m)
    (out / "manifest.json").write_text(json.dumps(m))


def test_a_snapshot_linked_outside_is_refused_without_a_word_about_its_target(tiny_run, tmp_path):
    import os

    import pytest

    from lifelong.runs import RunError, open_run

    out = _copy(tiny_run, tmp_path)
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x" * 1234)
    (out / "task-00.safetensors").unlink()
    os.symlink(secret, out / "task-00.safetensors")
    with pytest.raises(RunError) as err:
        open_run(out)
    assert "not a plain file inside the run folder" in str(err.value)
    assert "1234" not in str(err.value) and "secret" not in str(err.value)


def test_names_that_lead_out_are_refused(tiny_run, tmp_path):
    import pytest

    from lifelong.runs import RunError, open_run

    for i, bad in enumerate(
        ["../x.safetensors", "/etc/passwd", ".hidden.safetensors", "a/b.safetensors"]
    ):
        out = _copy(tiny_run, tmp_path, f"c{i}")
        _edit(out, lambda m, bad=bad: m["evaldata"]["0"].update(file=bad))
        with pytest.raises(RunError, match="not a plain file name"):
            open_run(out)


def test_a_linked_manifest_or_log_is_not_read(tiny_run, tmp_path):
    import os

    import pytest

    from lifelong.runs import RunError, open_run

    out = _copy(tiny_run, tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_text((out / "manifest.json").read_text())
    (out / "manifest.json").unlink()
    os.symlink(outside, out / "manifest.json")
    with pytest.raises(RunError, match="manifest.json is not a plain file"):
        open_run(out)
    out = _copy(tiny_run, tmp_path, "log")
    log = tmp_path / "other.jsonl"
    log.write_text('{"kind": "epoch", "task": 0, "loss": 1.0}\n')
    (out / "log.jsonl").unlink()
    os.symlink(log, out / "log.jsonl")
    assert open_run(out).log() == []


def test_malformed_fields_are_one_line(tiny_run, tmp_path):
    import pytest

    from lifelong.runs import RunError, open_run

    cases = {
        "metrics": lambda m: m.update(metrics={"mse": "high"}),
        "events": lambda m: m.update(events=["frozen"]),
        "tasks": lambda m: m.update(tasks="digits"),
        "evaldata": lambda m: m["evaldata"].update({"7": m["evaldata"]["0"]}),
        "seed": lambda m: m.update(seed="zero"),
        "order": lambda m: m["snapshots"].reverse(),
        "sha256": lambda m: m["snapshots"][0].update(sha256=None),
        "train": lambda m: m["train"].update(epochs="x"),
    }
    for name, change in cases.items():
        out = _copy(tiny_run, tmp_path, name)
        _edit(out, change)
        with pytest.raises(RunError) as err:
            open_run(out)
        assert "\n" not in str(err.value), name


def test_a_config_naming_a_huge_network_is_refused_before_it_is_built(tiny_run, tmp_path):
    import resource

    import pytest

    from lifelong.runs import RunError, open_run

    out = _copy(tiny_run, tmp_path)
    _edit(out, lambda m: m["config"].update(hidden=150000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RunError, match="config implies"):
        open_run(out).load_model()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200
    _edit(out, lambda m: m["config"].update(hidden=32, latent_dim="abc"))
    with pytest.raises(RunError, match="latent_dim='abc' is not a whole number"):
        open_run(out).load_model()
    _edit(out, lambda m: m["config"].update(latent_dim=4))
    _edit(out, lambda m: [s.update(arch={"n_experts": 10**9}) for s in m["snapshots"]])
    with pytest.raises(RunError, match="out of range"):
        open_run(out).load_model()


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    from lifelong.runs import atomic_write

    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["manifest.json"]
