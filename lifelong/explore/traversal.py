"""Latent traversal (paper 000 Figs. 7-8): decode one input's code with single variables moved.

The page picks an input (a test image or a prior sample) and an expert, shows one slider per
latent variable of that expert's blocks, and the grid of every variable swept over -3..3 with
the others held at the input's posterior mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lifelong.explore import images


@dataclass
class Start:
    """Where a traversal starts: the expert and its code values (block -> [d] floats)."""

    expert: int | None
    codes: dict[str, list[float]]
    routed: bool = False


def blocks_for(model, expert: int | None):
    """Latent blocks a traversal of `expert` moves: those it owns plus shared ones."""
    blocks = model.latent_blocks()
    if expert is None:
        return blocks
    return [b for b in blocks if b.owner in (expert, "shared", None)]


@torch.no_grad()
def start_from_image(model, x: torch.Tensor, expert: int | None = None) -> Start:
    """x [1, C, H, W]: posterior means through `expert`, or the expert eq. 7 selects for x."""
    routed = expert is None and bool(model.experts())
    if routed:
        expert = int(model.select(x)[0])
    post = model.encode(x, expert) if model.experts() else model.encode(x)
    codes = {}
    for b in blocks_for(model, expert):
        p = post[b.name]
        value = p["mu"] if "mu" in p else torch.softmax(p["logits"], dim=-1)
        codes[b.name] = value[0].tolist()
    return Start(expert, codes, routed)


def start_from_prior(model, expert: int | None, seed: int = 0) -> Start:
    """A draw from the prior N(0, I) (one-hot for categorical blocks), reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    codes = {}
    for b in blocks_for(model, expert):
        if b.kind == "categorical":
            v = torch.zeros(b.dim)
            v[int(torch.randint(b.dim, (), generator=g))] = 1.0
        else:
            v = torch.randn(b.dim, generator=g)
        codes[b.name] = v.tolist()
    return Start(expert, codes)


@torch.no_grad()
def decode(model, codes: dict[str, list[float]], expert: int | None) -> torch.Tensor:
    """Codes (block -> [d]) -> one image [1, C, H, W] in [0, 1]."""
    dev = model.device
    tensors = {k: torch.tensor([v], dtype=torch.float32, device=dev) for k, v in codes.items()}
    return model.decode(tensors, expert) if model.experts() else model.decode(tensors)


@torch.no_grad()
def sweep(model, start: Start, values) -> tuple[torch.Tensor, list[str]]:
    """Every Gaussian variable of the start's blocks swept over `values`, one row per variable.

    Returns images [V * len(values), C, H, W] (row-major) and the row labels ("z0[3]", ...).
    All rows are decoded in one batch per block.
    """
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    rows, labels = [], []
    for name, base in start.codes.items():
        block = next(b for b in model.latent_blocks() if b.name == name)
        if block.kind != "gaussian":
            continue
        d, n = len(base), len(values)
        z = torch.tensor(base).repeat(d * n, 1)  # [d*n, d]
        for i in range(d):
            z[i * n : (i + 1) * n, i] = values
        codes = {k: torch.tensor(v).repeat(d * n, 1) for k, v in start.codes.items()}
        codes[name] = z
        codes = {k: v.to(model.device) for k, v in codes.items()}
        out = model.decode(codes, start.expert) if model.experts() else model.decode(codes)
        rows.append(out.cpu())
        labels += [f"{name}[{i}]" for i in range(d)]
    return torch.cat(rows), labels


def sweep_png(imgs: torch.Tensor, n_values: int, scale: int = 2) -> bytes:
    return images.png_bytes(images.grid(imgs, n_values, scale=scale))


def sweep_gif(imgs: torch.Tensor, n_values: int, scale: int = 2) -> bytes:
    """Frame t shows every variable at the t-th value side by side (one column per variable)."""
    per_var = imgs.view(-1, n_values, *imgs.shape[1:])  # [V, n, C, H, W]
    n_vars = per_var.shape[0]
    frames = [images.grid(per_var[:, t], min(n_vars, 10), scale=scale) for t in range(n_values)]
    return images.gif_bytes(frames)
