"""Metrics as pure functions of arrays/tensors (no models): reconstruction errors and what the
forgetting matrix says. Matrices are indexed [snapshot k][task j]; None where undefined."""

from __future__ import annotations

import math

import torch


def mse(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over pixels: [N, C, H, W] x2 -> [N] (images in [0, 1])."""
    return (x - recon).pow(2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: [N]."""
    return -10.0 * torch.log10(mse(x, recon).clamp_min(1e-10))


def forgetting(matrix: list[list[float | None]], higher_is_better: bool = False) -> list:
    """Per task j: how much worse its value is after the last snapshot than right after it was
    learnt (snapshot j). Positive = forgotten. [T] (None for tasks not yet learnt)."""
    if not matrix:
        return []
    last = matrix[-1]
    out = []
    for j in range(len(last)):
        if j >= len(matrix) or matrix[j][j] is None or last[j] is None:
            out.append(None)
            continue
        delta = last[j] - matrix[j][j]
        out.append(-delta if higher_is_better else delta)
    return out


def backward_transfer(matrix: list[list[float | None]], higher_is_better: bool = False):
    """Mean change on earlier tasks after the last one (Lopez-Paz & Ranzato); the sign is such
    that positive means the later tasks helped. None with fewer than two snapshots."""
    f = [v for v in forgetting(matrix, higher_is_better)[: len(matrix) - 1] if v is not None]
    return -sum(f) / len(f) if f else None


def finite(value: float) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    return None if value is None or not math.isfinite(value) else float(value)
