"""Shared networks: every family builds, encodes, decodes and takes a training step on image
sides that are not a multiple of 4 (the data layer allows size=8..256)."""

import pytest
import torch

from lifelong import models
from lifelong.train.trainer import build_config


@pytest.mark.parametrize("family", sorted(models.REGISTRY))
@pytest.mark.parametrize("side", [9, 30])
def test_odd_image_sides(family, side):
    torch.manual_seed(0)
    spec = f"digits:size={side}"
    cfg = build_config(family, [spec, spec], {"latent_dim": 2, "hidden": 16, "channels": 4})
    model = models.build(family, cfg)
    x = torch.rand(4, 1, side, side)
    batch = {
        "x": x,
        "y": torch.zeros(4, dtype=torch.long),
        "task": torch.zeros(4, dtype=torch.long),
    }
    terms = model.loss(batch, 0)
    assert torch.isfinite(terms["total"])
    model.eval()
    with torch.no_grad():
        assert model.reconstruct(x).shape == x.shape
        assert model.sample(2).shape == (2, 1, side, side)
