"""The pieces of CPVAE's training loss (paper 004) that are plain functions: eq. 6's
cross-population KL on a minibatch, and App. B.1's random translations of training images.
cpvae.py's loss() uses both."""

from __future__ import annotations

import torch
from torch import nn


def cross_population_kl(kl: torch.Tensor, population: torch.Tensor) -> torch.Tensor:
    """The last term of paper 004 eq. 6 on a minibatch, as per-sample values [N].

    kl: [N, M] KL(q_k(t|x_i) || N(0, I)) of every private encoder k on every sample i;
    population: [N] long in 0..M-1. Eq. 6 charges encoder k, for each contrasting population
    j != k, n_k / (K - 1) times the mean KL over x_j. With B_k samples of population k in a
    batch of B (n_k ~ B_k N / B), sample i of population j carries
        c_i = 1 / (M' - 1) * sum_{k != j} KL[i, k] * B_k / B_j
    (M' = populations present), so mean_i c_i is eq. 6's term per sample. A sample never pays
    its own encoder's KL, and encoder k sees only other populations' data. 0 if M' < 2.
    """
    n, m = kl.shape
    counts = torch.bincount(population, minlength=m).to(kl.dtype)  # B_k
    present = int((counts > 0).sum())
    if present < 2:
        return kl.new_zeros(n)
    weight = counts[None, :] / counts[population][:, None]  # B_k / B_j
    other = torch.ones_like(kl, dtype=torch.bool)
    other[torch.arange(n, device=kl.device), population] = False
    return (kl * weight * other).sum(dim=1) / (present - 1)


def translate(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Each image shifted by whole pixels, up to round(fraction * side) in each direction,
    uncovered pixels 0 (App. B.1's augmentation of the classification experiments)."""
    n, _, h, w = x.shape
    m = round(fraction * max(h, w))
    if m == 0:
        return x
    padded = nn.functional.pad(x, (m, m, m, m))
    dy, dx = torch.randint(0, 2 * m + 1, (2, n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    idx = torch.arange(n, device=x.device)[:, None, None, None]
    return padded[idx, torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
