"""evaluate() selects once (models.base.assess): the metrics are those of the three calls it
made before (reconstruct, score and select, each selecting on its own), on small seeded
mixtures, and L-MVAE makes 2K + 1 expert passes a batch instead of 4K + 1."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch

from lifelong import losses, metrics
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.models.mvae import MVAEConfig
from lifelong.train.evaluate import evaluate
from tests.conftest import synthetic_task


@torch.no_grad()
def reference_evaluate(model, tests, max_samples=512, batch_size=256) -> dict:
    """evaluate() as it was: reconstruct(x), score(x) and select(x) per batch."""
    out = {"mse": [], "elbo": [], "psnr": []}
    experts = model.experts()
    holders = model.task_experts()
    if experts:
        out["routing"], out["routing_accuracy"] = [], []
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    for j, data in enumerate(tests):
        x_all = data.x[:max_samples]
        mse, elbo, psnr, chosen = [], [], [], []
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size].to(model.device)
            recon = model.reconstruct(x)
            mse.append(metrics.mse(x, recon))
            psnr.append(metrics.psnr(x, recon))
            elbo.append(model.score(x))
            if experts:
                chosen.append(model.select(x))
        out["mse"].append(metrics.finite(torch.cat(mse).mean().item()))
        out["psnr"].append(metrics.finite(torch.cat(psnr).mean().item()))
        out["elbo"].append(metrics.finite(torch.cat(elbo).mean().item()))
        if experts:
            sel = torch.cat(chosen).cpu()
            frac = torch.bincount(sel, minlength=len(experts)).float() / len(sel)
            out["routing"].append([round(v, 4) for v in frac.tolist()])
            holder = holders[j] if j < len(holders) else -1
            out["routing_accuracy"].append(float(frac[holder]) if holder >= 0 else None)
    torch.random.set_rng_state(gen_state)
    return out


NETS = {"latent_dim": 3, "hidden": 16, "channels": 4}
KINDS = ["hbar", "vbar", "blob"]


def _specialised(config, steps: int = 30):
    """A seeded L-MVAE whose expert k learnt KINDS[k] alone and holds task k, so eq. 7 routes
    each kind to its own expert and a batch of mixed kinds is split between experts."""
    torch.manual_seed(0)
    model = build("lmvae", config)
    for k, kind in enumerate(KINDS):
        x = synthetic_task(kind, 64, seed=k).x
        opt = torch.optim.Adam(model.experts_[k].parameters(), lr=3e-3)
        for _ in range(steps):
            loss = -losses.elbo(model._terms(k, x)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.task_expert.copy_(torch.arange(3))
    return model.eval()


def _mvae():
    torch.manual_seed(0)
    model = build("mvae", MVAEConfig(n_tasks=3, n_components=3, **NETS))
    data = synthetic_task("hbar", 64)
    opts = model.make_optimizers()
    for _ in range(3):
        model.train_step({"x": data.x, "y": data.y}, 0, opts)
    return model.eval()


MODELS = {
    "lmvae": functools.cache(lambda: _specialised(LMVAEConfig(n_tasks=3, **NETS))),
    "lmvae-supervised": lambda: _specialised(
        LMVAEConfig(n_tasks=3, supervision="supervised", n_classes=10, **NETS)
    ),
    "mvae": _mvae,
}


def _mixed(j: int, n: int = 40):
    """Task j's test images: kinds j and j + 1 interleaved, labelled by kind."""
    a, b = (synthetic_task(KINDS[(j + i) % 3], n, seed=10 + j) for i in (0, 1))
    x = torch.stack([a.x, b.x], 1).flatten(0, 1)[:n]
    y = torch.tensor([(j + i % 2) % 3 for i in range(len(x))])
    return SimpleNamespace(x=x, y=y)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_metrics_are_those_of_the_three_calls(name):
    model = MODELS[name]()
    tests = [_mixed(j) for j in range(3)]
    torch.manual_seed(7)
    new = evaluate(model, tests, max_samples=40, batch_size=16)  # 3 batches, the last short
    after_new = torch.rand(1)
    torch.manual_seed(7)
    old = reference_evaluate(model, tests, max_samples=40, batch_size=16)
    assert torch.equal(after_new, torch.rand(1))  # the caller's random stream is left as it was
    accuracy = new.pop("class_accuracy", None)  # not in the reference loop
    assert new == old
    if name == "lmvae-supervised":  # the share of each task's images classified as labelled
        want = [float((model.predict_labels(t.x) == t.y).float().mean()) for t in tests]
        assert accuracy == pytest.approx(want, abs=1e-6)
    else:
        assert accuracy is None
    if name == "lmvae":  # each task's images go to two experts: the split is used
        assert all(sum(v > 0 for v in r) == 2 for r in new["routing"]), new["routing"]


def test_lmvae_selects_once_per_batch(monkeypatch):
    """K posterior-mean passes select, K sampled ones score, one decode reconstructs."""
    model = MODELS["lmvae"]()
    calls = []
    real = model.expert_elbos

    def counted(x, sample=True):
        calls.append(sample)
        return real(x, sample)

    monkeypatch.setattr(model, "expert_elbos", counted)
    evaluate(model, [synthetic_task("vbar", 40, seed=3)], max_samples=40, batch_size=16)
    assert calls == [False, True] * 3  # one selection and one sampled score per batch
