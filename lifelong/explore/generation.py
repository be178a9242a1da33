"""The Generation grid: discrete code along columns, one continuous variable along rows
(paper 003 Fig. 3, paper 001 Fig. 5b).

Columns are the categories of a categorical latent block (InfoGAN's d, LGM's z_d) or, for a
mixture without one, its experts (each expert decodes the same code: paper 002 Fig. 17's
per-component generations). Every other variable is held at one prior draw, the same for
every cell, so a row differs only by the discrete choice and a column only by the variable.
"""

from __future__ import annotations

import torch


def column_sources(model) -> list[str]:
    """What can run along the columns: categorical block names, and "experts" for mixtures."""
    out = [b.name for b in model.latent_blocks() if b.kind == "categorical"]
    return out + (["experts"] if model.experts() else [])


def continuous_variables(model, source: str) -> list[tuple[str, int]]:
    """(block, index) of the Gaussian variables a grid can move: for "experts", those of the
    first expert's block (every expert's block has the same size); otherwise every
    non-expert-owned Gaussian block."""
    blocks = model.latent_blocks()
    if source == "experts":
        first = model.experts()[0]
        blocks = [b for b in blocks if b.owner == first]
    return [(b.name, i) for b in blocks if b.kind == "gaussian" for i in range(b.dim)]


@torch.no_grad()
def grid(model, source: str, variable: tuple[str, int], values, seed: int = 0):
    """-> (images [len(values) * n_cols, C, H, W] row-major, column labels).

    Row r sets `variable` to values[r]; column c picks category c of block `source` or, for
    source == "experts", decodes through expert c (its own block gets the code)."""
    values = torch.as_tensor(values, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    blocks = {b.name: b for b in model.latent_blocks()}
    name, index = variable
    n = len(values)
    if source == "experts":
        experts = model.experts()
        base = torch.randn(blocks[name].dim, generator=g)
        z = base.repeat(n, 1)
        z[:, index] = values
        cols = []
        for k in experts:
            own = next(b.name for b in blocks.values() if b.owner == k)
            cols.append(model.decode({own: z.to(model.device)}, k).cpu())
        labels = [f"expert {k}" for k in experts]
    else:
        cat = blocks[source]
        codes = {}
        for b in blocks.values():
            if b.name == source:
                continue
            if b.kind == "categorical":
                v = torch.zeros(b.dim)
                v[int(torch.randint(b.dim, (), generator=g))] = 1.0
            else:
                v = torch.randn(b.dim, generator=g)
            codes[b.name] = v.repeat(n, 1)
        codes[name][:, index] = values
        cols = []
        for c in range(cat.dim):
            one = {k: v.to(model.device) for k, v in codes.items()}
            one[source] = torch.nn.functional.one_hot(torch.full((n,), c), cat.dim).float()
            cols.append(model.decode(one).cpu())
        labels = [f"{source}={c}" for c in range(cat.dim)]
    return torch.stack(cols, dim=1).flatten(0, 1), labels
