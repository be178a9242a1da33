"""The single-VAE baselines: fine-tuned (forgets) and joint (one phase on the union)."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong import losses
from lifelong.__main__ import main
from lifelong.explore import traversal
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.models.vae import VAEConfig
from lifelong.runs import open_run
from lifelong.train.trainer import read_log
from tests.conftest import synthetic_task

TINY = dict(latent_dim=4, hidden=32, channels=8)
TINY_SET = ["--set", "latent_dim=4", "--set", "hidden=32", "--set", "channels=8"]
DIGITS = "digits:classes=0-4,digits:classes=5-9"


def cli_run(tmp_path, model: str, *sets: str):
    """Train `model` on two digit tasks for one epoch through the CLI, eval it, and drive the
    traversal functions on the loaded model; returns the run folder."""
    out = tmp_path / model
    argv = ["train", "--model", model, "--tasks", DIGITS, "--epochs", "1", "--device", "cpu"]
    assert main([*argv, "--out", str(out), *TINY_SET, *sets]) == 0
    assert main(["eval", str(out)]) == 0
    m = open_run(out).load_model()
    x = synthetic_task("hbar", 1).x
    s = traversal.start_from_image(m, x)
    imgs, labels = traversal.sweep(m, s, [-3, 0, 3])
    assert imgs.shape[0] == 3 * len(labels) > 0 and torch.isfinite(imgs).all()
    expert = m.experts()[0] if m.experts() else None
    assert traversal.start_from_prior(m, expert).codes
    return out


def _train(model, task, data, steps, bs=64):
    opt = model.make_optimizers()
    g = torch.Generator().manual_seed(task)
    for s in range(steps):
        model.progress = s / steps
        idx = torch.randint(len(data.x), (bs,), generator=g)
        model.train_step({"x": data.x[idx], "y": data.y[idx]}, task, opt)


def _mse(model, data) -> float:
    with torch.no_grad():
        return float((model.reconstruct(data.x) - data.x).pow(2).mean())


def test_joint_run_is_one_phase_on_the_union(tmp_path, capsys):
    out = cli_run(tmp_path, "vae", "--set", "joint=true")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["after_task"] for s in manifest["snapshots"]] == [1]
    assert len(manifest["metrics"]["mse"]) == 1 and len(manifest["metrics"]["mse"][0]) == 2
    steps = {r["total_steps"] for r in read_log(out / "log.jsonl") if "total_steps" in r}
    assert steps == {12}  # ceil((753 + 748) / 128): both tasks' images in one phase
    assert "forgetting_mse" in capsys.readouterr().out


def test_finetuned_run_has_a_snapshot_per_task(tmp_path):
    out = cli_run(tmp_path, "vae")
    run = open_run(out)
    assert run.snapshots == [0, 1] and len(run.manifest["metrics"]["mse"]) == 2


def test_phases_and_the_network_shared_with_lmvae():
    assert build("vae", VAEConfig(n_tasks=3)).training_phases(3) == [[0], [1], [2]]
    assert build("vae", VAEConfig(n_tasks=3, joint=True)).training_phases(3) == [[0, 1, 2]]
    # Same defaults as an L-MVAE expert: identical parameter names and shapes.
    vae = {
        k.removeprefix("net."): v.shape for k, v in build("vae", VAEConfig()).state_dict().items()
    }
    expert = build("lmvae", LMVAEConfig(n_tasks=1)).experts_[0].state_dict()
    assert vae == {k: v.shape for k, v in expert.items()}


def test_finetuned_vae_forgets_the_first_task(tasks):
    torch.manual_seed(0)
    model = build("vae", VAEConfig(n_tasks=2, lr=3e-3, **TINY))
    hbar, vbar = tasks[0], tasks[1]
    _train(model, 0, hbar, 300)
    before = _mse(model, hbar)
    _train(model, 1, vbar, 300)
    after = _mse(model, hbar)
    assert after > 3 * before and after > 0.03, (before, after)
    assert _mse(model, vbar) < after  # it learnt the new task instead


def test_objective_options(monkeypatch):
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    torch.manual_seed(0)
    x = synthetic_task("hbar", 16).x
    plain = build("vae", VAEConfig(**TINY))
    terms = plain.terms(x)
    assert torch.allclose(plain.loss({"x": x}, 0)["total"], -plain.score(x).mean())
    beta = build("vae", VAEConfig(beta=4.0, **TINY))
    beta.load_state_dict(plain.state_dict())
    expected = -(terms["rec"] - 4.0 * terms["kl"]).mean()
    assert torch.allclose(beta.loss({"x": x}, 0)["total"], expected)
    ann = build("vae", VAEConfig(beta_anneal=True, beta_start=0.2, beta_warmup=0.5, **TINY))
    ann.progress = 0.25
    assert float(ann.loss({"x": x}, 0)["beta"]) == pytest.approx(0.6)
    cap = build("vae", VAEConfig(objective="capacity", capacity_max=20.0, **TINY))
    cap.progress = 0.5
    assert float(cap.loss({"x": x}, 0)["capacity"]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="objective"):
        VAEConfig(objective="nope").validate()
