"""The dHSIC heatmap's data on a small L-MVAE: experts encode the same images."""

from __future__ import annotations

import torch

from lifelong import hsic
from lifelong.explore import dependence
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task


def test_heatmap_matches_hsic_on_the_experts_codes():
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=3, latent_dim=3, hidden=16, channels=4)).eval()
    tests = [synthetic_task(k, 40, seed=i) for i, k in enumerate(["hbar", "vbar", "blob"])]
    x = dependence.images(tests, None, n=60)
    assert x.shape[0] == 60 and torch.equal(dependence.images(tests, None, n=60), x)
    h = dependence.heatmap(model, x, normalise=False)
    assert len(h["matrix"]) == 3 and h["experts"] == [0, 1, 2]
    codes = h["codes"]
    assert torch.allclose(codes[1], model.encode(x, 1)["z1"]["mu"])
    assert abs(h["matrix"][0][2] - float(hsic.hsic(codes[0], codes[2]))) < 1e-6
    assert abs(h["joint"] - float(hsic.dhsic(codes))) < 1e-6
    norm = dependence.heatmap(model, x, normalise=True)["matrix"]
    assert all(abs(norm[k][k] - 1) < 1e-5 for k in range(3))
    # a wider kernel changes the figure; the heuristic is the default
    assert dependence.heatmap(model, x, scale=4.0)["bandwidths"][0] > h["bandwidths"][0]
    pc = dependence.first_component(codes[0])
    assert pc.shape == (60,) and abs(pc.mean()) < 1e-9
