"""Cross-domain interpolation between two inputs (paper 000 Fig. 6, paper 002 eqs. 33-36,
paper 001 Fig. 8) and the conversion of uploaded pictures into a model's input format.

Gaussian latent blocks move along a linear or spherical path; categorical blocks (LGM's z_d,
InfoGAN's d) stay fixed at one endpoint's code, so for LGM the strip shows z_c interpolated
under one fixed z_d.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lifelong.data import pixels

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 40_000_000  # PIL's decompression-bomb guard, made an error instead of a warning


class InputError(ValueError):
    """An upload that cannot be turned into an image; one line, shown as is."""


def path(z0: torch.Tensor, z1: torch.Tensor, steps: int, kind: str = "linear") -> torch.Tensor:
    """[d], [d] -> [steps, d] from z0 to z1 (endpoints included). `slerp` follows the great
    circle between the directions while interpolating the norms (the usual choice for
    Gaussian codes, whose mass sits near a sphere); it falls back to linear for parallel codes."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    if kind == "linear":
        return (1 - t) * z0 + t * z1
    if kind != "slerp":
        raise ValueError(f"unknown path {kind!r}; valid: linear, slerp")
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(1e-12), z1 / n1.clamp_min(1e-12)
    omega = torch.arccos((u0 * u1).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    dirs = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return dirs * ((1 - t) * n0 + t * n1)


def _codes(model, x: torch.Tensor, expert: int | None) -> dict[str, torch.Tensor]:
    """Posterior means per block ([d] each); categorical blocks as one-hot of their argmax."""
    post = model.encode(x, expert) if model.experts() else model.encode(x)
    out = {}
    for name, p in post.items():
        if "mu" in p:
            out[name] = p["mu"][0]
        else:
            logits = p["logits"][0]
            out[name] = torch.nn.functional.one_hot(logits.argmax(), logits.numel()).float()
    return out


def _kinds(model) -> dict[str, str]:
    return {b.name: b.kind for b in model.latent_blocks()}


@torch.no_grad()
def strip(
    model,
    x0: torch.Tensor,
    x1: torch.Tensor,
    steps: int = 8,
    kind: str = "linear",
    encoder: int | None = None,
    decoder: int | None = None,
    fixed_from: int = 0,
) -> torch.Tensor:
    """Interpolate x0 -> x1 ([1, C, H, W] each) -> [steps, C, H, W].

    Mixtures encode with expert `encoder` and decode with expert `decoder` (the same expert
    for paper 000's Fig. 6; different ones for paper 002's mismatched eq. 36); the codes of
    `encoder`'s block are decoded as the block of `decoder`. Categorical blocks are held at
    endpoint `fixed_from`'s code (0 or 1).
    """
    c0, c1 = _codes(model, x0, encoder), _codes(model, x1, encoder)
    kinds = _kinds(model)
    codes = {}
    for name in c0:
        if kinds.get(name) == "categorical":
            held = (c0, c1)[fixed_from][name]
            codes[name] = held.expand(steps, -1)
        else:
            codes[name] = path(c0[name], c1[name], steps, kind)
    if model.experts():
        target = {b.owner: b.name for b in model.latent_blocks()}[decoder]
        codes = {target: next(iter(codes.values()))}
        return model.decode(codes, decoder).cpu()
    return model.decode(codes).cpu()


@torch.no_grad()
def pair_expert(model, x0: torch.Tensor, x1: torch.Tensor) -> int:
    """The expert eq. 7 would pick for the pair: the best summed ELBO of both endpoints."""
    scores = [model.score(torch.cat([x0, x1]), expert=k).sum() for k in model.experts()]
    return model.experts()[int(torch.stack(scores).argmax())]


def from_upload(data: bytes, shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """Uploaded bytes -> ([1, C, H, W] in [0, 1], the conversion steps in words).

    Any size, mode or format PIL reads: EXIF orientation applied, transparency flattened on
    white, converted to grey or RGB as the model expects, centre-cropped to a square, resized,
    and inverted when the background is light (the embedded datasets draw light on dark).
    """
    c, h, w = shape
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"image is {len(data) / 2**20:.1f} MB; the limit is 10 MB")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InputError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    steps = [f"read {img.format or 'image'} {img.width}x{img.height} {img.mode}"]
    img = ImageOps.exif_transpose(img)
    if (deep := pixels.to_8bit(img)) is not img:  # I;16, I, F: scaled, not clipped to 8 bits
        lab = img.mode == "LAB"
        steps.append("LAB: its lightness channel" if lab else f"{img.mode} values scaled to 8 bits")
        img = deep
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        flat = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(flat, img)
        steps.append("transparency flattened on white")
    mode = "L" if c == 1 else "RGB"
    if img.mode != mode:
        steps.append(f"converted to {'grey' if c == 1 else 'RGB'}")
        try:
            img = img.convert(mode)
        except ValueError as exc:  # a mode PIL has no conversion for
            raise InputError(f"cannot convert a {img.mode} image: {exc}") from None
    side = min(img.size)
    if img.width != img.height:
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
        steps.append(f"centre-cropped to {side}x{side}")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.LANCZOS)
        steps.append(f"resized to {w}x{h}")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    border = np.concatenate([arr[:, 0].ravel(), arr[:, -1].ravel(), arr[:, :, 0].ravel()])
    if border.mean() > 0.5:
        arr = 1.0 - arr
        steps.append("inverted (light background)")
    return torch.from_numpy(np.ascontiguousarray(arr))[None], steps
