"""Mid-task checkpoints: contents, fallback past a corrupt one, refusals in one line, never a
NaN checkpoint, invisible to the run's listing and archives, seeded runs reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong import archive, runs
from lifelong.__main__ import main
from lifelong.train import TrainingError, train
from lifelong.train import checkpoint as ckpt_mod
from tests.conftest import TINY_NETS as TINY
from tests.conftest import TINY_TASKS as TASKS
from tests.conftest import StopAt, tiny_args


def _args(out, **kw):
    return tiny_args(out, **{"epochs": 3, "map_points": 0, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return train(_args(tmp_path_factory.mktemp("ck") / "ref"), callbacks=[])


def _same_weights(a, b) -> bool:
    sa, sb = runs.open_run(a).state(1), runs.open_run(b).state(1)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _interrupted(out, task=1, epoch=2):
    with pytest.raises(KeyboardInterrupt):
        train(_args(out), callbacks=[StopAt(task, epoch)])
    return ckpt_mod.listed(out)


def test_checkpoint_holds_weights_optimizer_rng_and_arch(tmp_path):
    out = tmp_path / "r"
    files = _interrupted(out)
    assert [f.name[:14] for f in files] == ["ckpt-t01-e0002", "ckpt-t01-e0001"]  # newest 2
    assert not list(out.glob("*ckpt*")) and ckpt_mod.FOLDER.startswith(".")
    c = ckpt_mod.read(files[0])
    assert (c.task, c.epoch, c.meta["arch"]) == (1, 2, {"n_experts": 2})
    assert c.meta["family"] == "lmvae" and c.meta["tasks"] == TASKS
    assert set(c.meta["optimizers"]) == {"model"}
    adam = [k.rsplit("/", 1)[-1] for k in c.tensors if k.startswith("optim/model/")]
    assert {"step", "exp_avg", "exp_avg_sq"} <= set(adam)
    assert c.meta["optimizers"]["model"]["param_groups"][0]["lr"] == 1e-3
    assert c.tensors["rng/torch"].dtype == torch.uint8 and "rng/data" in c.tensors
    m = json.loads((out / "manifest.json").read_text())
    # Ctrl-C (KeyboardInterrupt) leaves the manifest saying so; --resume sets it running again
    assert m["checkpoint"]["epoch"] == 2 and m["status"] == "interrupted"


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_then_the_snapshot(
    tmp_path, reference, capsys
):
    out = tmp_path / "r"
    newest, previous = _interrupted(out)
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the tensor data
    newest.write_bytes(bytes(data))
    train(_args(out, resume=True), callbacks=[])
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "checkpoint after epoch 1 of task 1" in err
    assert _same_weights(out, reference)

    out2 = tmp_path / "r2"
    for f in _interrupted(out2):
        f.write_bytes(f.read_bytes()[:100])  # cut short
    train(_args(out2, resume=True), callbacks=[])
    assert "snapshot after task 0" in capsys.readouterr().err
    assert _same_weights(out2, reference)
    assert not (out2 / ".checkpoints").exists()


def test_runs_that_cannot_be_resumed_say_why_in_one_line(tmp_path, reference, capsys):
    base = ["train", "--tasks", ",".join(TASKS), "--device", "cpu"]
    cases = [
        (tmp_path / "nothing", [], "no manifest.json"),
        (reference, [], "finished already"),
    ]
    out = tmp_path / "r"
    _interrupted(out)
    cases += [
        (out, ["--model", "vae"], "same --model and --tasks"),
        (out, ["--epochs", "5"], "--epochs 3, not 5"),
        (out, ["--batch-size", "32"], "--batch-size 64, not 32"),
        (out, ["--set", "hidden=32"], "hidden=16, not 32"),
        (out, ["--seed", "4"], "--seed 0, not 4"),
    ]
    for run, extra, message in cases:
        model = [] if "--model" in extra else ["--model", "lmvae"]
        assert main([*base, *model, "--out", str(run), "--resume", *extra]) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    # left-out options are the run's own: this resumes (and finishes) it
    argv = [*base, "--model", "lmvae", "--out", str(out), "--resume", "--set", "latent_dim=2"]
    assert main([*argv, "--threads", "1"]) == 0
    assert runs.open_run(out).manifest["status"] == "complete"


def test_nan_weights_never_reach_a_checkpoint_and_the_run_stays_resumable(
    tmp_path, monkeypatch, capsys
):
    from lifelong.models.lmvae import LMVAE

    real = LMVAE.epoch_stats
    calls = []

    def poisoned(self):
        calls.append(1)
        if len(calls) == 5:  # task 1, after its second epoch: a weight turns NaN
            next(self.parameters()).data.view(-1)[0] = float("nan")
        return real(self)

    monkeypatch.setattr(LMVAE, "epoch_stats", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match="weights became non-finite"):
        train(_args(out), callbacks=[])
    files = ckpt_mod.listed(out)
    assert [f.name[:14] for f in files] == ["ckpt-t01-e0001"]
    for f in files:
        c = ckpt_mod.read(f)
        assert all(torch.isfinite(v).all() for v in c.tensors.values() if v.is_floating_point())
    run = runs.open_run(out)
    assert run.snapshots == [0] and run.manifest["status"].startswith("failed")
    monkeypatch.setattr(LMVAE, "epoch_stats", real)
    # the advice in the message works: a lower learning rate on --resume
    train(_args(out, resume=True, overrides={**TINY, "lr": 5e-4}), callbacks=[])
    run = runs.open_run(out)
    assert run.snapshots == [0, 1] and run.manifest["config"]["lr"] == 5e-4
    assert "learning rate changed" in capsys.readouterr().err


def test_an_interrupted_run_exports_and_imports_without_its_checkpoints(tmp_path):
    out = tmp_path / "r"
    assert _interrupted(out)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    evaldata = ["evaldata-00.safetensors", "evaldata-01.safetensors"]  # every task's, at once
    table = ["expert_elbo-00.safetensors"]  # Compare experts' stored table (a mixture's)
    assert names == [*evaldata, *table, "log.jsonl", "manifest.json", "task-00.safetensors"]
    data = archive.export_zip(out)
    dest = archive.import_zip(data, tmp_path / "uploads")
    assert runs.open_run(dest).snapshots == [0] and not (dest / ".checkpoints").exists()
    assert runs.find_runs(tmp_path) == [out]


def test_seeded_cpu_runs_give_identical_snapshot_bytes(tmp_path):
    one = train(_args(tmp_path / "a", epochs=1, tasks=TASKS[:1]), callbacks=[])
    two = train(_args(tmp_path / "b", epochs=1, tasks=TASKS[:1]), callbacks=[])
    assert (one / "task-00.safetensors").read_bytes() == (two / "task-00.safetensors").read_bytes()


def test_amp_bf16_on_cpu_trains_and_is_reproducible(tmp_path):
    kw = dict(epochs=1, tasks=TASKS[:1], amp="bf16")
    one = train(_args(tmp_path / "a", **kw), callbacks=[])
    two = train(_args(tmp_path / "b", **kw), callbacks=[])
    fp32 = train(_args(tmp_path / "c", epochs=1, tasks=TASKS[:1]), callbacks=[])
    a, b, c = (runs.open_run(p) for p in (one, two, fp32))
    assert a.manifest["train"]["amp"] == "bf16"
    assert all(torch.equal(a.state(0)[k], b.state(0)[k]) for k in a.state(0))
    assert not all(torch.equal(a.state(0)[k], c.state(0)[k]) for k in a.state(0))
    assert all(v is not None for v in a.metric("mse")[0])
    with pytest.raises(TrainingError, match="--amp"):
        train(_args(tmp_path / "d", amp="fp8"), callbacks=[])


@pytest.mark.parametrize("family", ["infogan", "cpvae", "mvae", "lgm", "ewc", "vae"])
def test_every_family_resumes_mid_task_bit_identically(tmp_path, family):
    """Every optimizer (InfoGAN's critic and generator), buffers and the families' own Python
    state (CPVAE's phase and epoch counter, MVAE's pruning log) come back from a checkpoint."""
    kw = dict(model=family, epochs=2, eval_samples=16)
    ref = train(_args(tmp_path / "ref", **kw), callbacks=[])
    out = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        train(_args(out, **kw), callbacks=[StopAt(1, 1)])
    assert ckpt_mod.listed(out)
    train(_args(out, resume=True, **kw), callbacks=[])
    a, b = runs.open_run(out), runs.open_run(ref)
    sa, sb = a.state(b.snapshots[-1]), b.state(b.snapshots[-1])
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.events == b.events and a.metric("mse") == b.metric("mse")
