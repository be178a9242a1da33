"""Compare experts at many experts: the mismatched grid decodes every code through each
decoder in one batch, and must equal decoding each (encoder, decoder) pair alone."""

from __future__ import annotations

import torch

from lifelong.explore import experts
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task


def test_batched_mismatched_grid_equals_each_pair_alone():
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=10, latent_dim=3, hidden=16, channels=4)).eval()
    x = synthetic_task("blob", 2, seed=3).x
    grid = experts.mismatched(model, x)  # only the first image is used
    assert grid.shape == (10, 10, 1, 28, 28)
    with torch.no_grad():
        for i in range(10):
            mu = model.encode(x[:1], i)[f"z{i}"]["mu"]
            for j in range(10):
                pair = model.decode({f"z{j}": mu}, j)[0]
                assert torch.allclose(grid[i, j], pair, atol=1e-6), (i, j)
    assert not torch.allclose(grid[0, 1], grid[1, 1])  # rows differ: each encoder's code
