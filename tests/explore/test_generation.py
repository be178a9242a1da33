"""The generation grid on an L-MVAE (experts along columns) and on a toy categorical model."""

from __future__ import annotations

import torch
from torch import nn

from lifelong.explore import generation
from lifelong.models import build
from lifelong.models.base import GenerativeModel, LatentBlock
from lifelong.models.lmvae import LMVAEConfig


class ToyCategorical(GenerativeModel):
    """decode = mean of d's one-hot index (rows of the image) plus c: exact expectations."""

    def __init__(self):
        super().__init__(None)
        self.w = nn.Parameter(torch.zeros(1))

    def latent_blocks(self):
        return [LatentBlock("d", 3, "categorical"), LatentBlock("c", 2, "gaussian")]

    def decode(self, codes, expert=None):
        d = codes["d"].argmax(1).float()
        c = codes["c"][:, 0]
        return (d + c)[:, None, None, None].expand(-1, 1, 2, 2)


def test_columns_are_categories_and_rows_the_variable():
    model = ToyCategorical()
    assert generation.column_sources(model) == ["d"]
    assert generation.continuous_variables(model, "d") == [("c", 0), ("c", 1)]
    imgs, labels = generation.grid(model, "d", ("c", 0), [-1.0, 0.0, 1.0])
    assert labels == ["d=0", "d=1", "d=2"] and imgs.shape == (9, 1, 2, 2)
    values = imgs[:, 0, 0, 0].view(3, 3)  # [row, column]
    assert torch.equal(values, torch.tensor([[-1.0, 0, 1], [0, 1, 2], [1, 2, 3]]))


def test_mixture_columns_are_experts_decoding_the_same_code():
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4)).eval()
    assert generation.column_sources(model) == ["experts"]
    assert generation.continuous_variables(model, "experts") == [("z0", i) for i in range(3)]
    imgs, labels = generation.grid(model, "experts", ("z0", 1), [-2.0, 2.0], seed=3)
    assert labels == ["expert 0", "expert 1"] and imgs.shape == (4, 1, 28, 28)
    z = torch.randn(3, generator=torch.Generator().manual_seed(3)).repeat(2, 1)
    z[:, 1] = torch.tensor([-2.0, 2.0])
    assert torch.allclose(imgs[1], model.decode({"z1": z}, 1)[0], atol=1e-6)  # row 0, expert 1
    assert torch.allclose(imgs[2], model.decode({"z0": z}, 0)[1], atol=1e-6)  # row 1, expert 0
