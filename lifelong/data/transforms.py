"""Image transforms behind the spec options. All take and return float32 [N, C, H, W] in
[0, 1] and never modify their input. The registry applies them in one fixed order, the order
of this file: classes (subset, done on labels) -> rotate -> size -> permute -> invert -> rgb.

Rotation comes before invert so the corners it uncovers are background (0) and turn to 1 with
the rest of the background; permute comes after size so every output pixel is permuted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image by `degrees` counter-clockwise (as displayed, rows pointing down)
    about its centre, bilinear, filling uncovered corners with 0. Multiples of 90 degrees are
    exact (they only move pixels)."""
    quarter = degrees / 90.0
    if quarter == round(quarter):
        return torch.rot90(x, int(round(quarter)) % 4, dims=(2, 3)).clone()
    n, _, h, w = x.shape
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # output pixel (u, v) samples the input at the point turned back by -t; in normalised
    # coordinates x spans W and y spans H, hence the aspect factors
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp(0.0, 1.0)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to size x size, bilinear with antialiasing when shrinking."""
    if x.shape[-2:] == (size, size):
        return x.clone()
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def permutation(seed: int, n_pixels: int) -> torch.Tensor:
    """The fixed pixel permutation (int64 [H*W]) that `permute=SEED` uses."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_pixels, generator=g)


def permute(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Shuffle pixel positions with the same fixed permutation for every image and channel
    (the classic 'permuted MNIST' task): out.flatten(2) = x.flatten(2)[..., perm]."""
    n, c, h, w = x.shape
    perm = permutation(seed, h * w)
    return x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)


def invert(x: torch.Tensor) -> torch.Tensor:
    """1 - x: white background, dark ink."""
    return 1.0 - x


def rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey [N, 1, H, W] -> [N, 3, H, W] by repeating the channel; 3-channel input unchanged."""
    if x.shape[1] == 3:
        return x.clone()
    return x.repeat(1, 3, 1, 1)
