"""Image files -> 8-bit pixels with the right values, for every mode PIL opens.

PIL's own `convert("L")` clips high-depth images instead of scaling them: a 16-bit ramp
(mode `I;16`) averaging 0.5 comes out at 0.998, nearly white. `to_8bit` scales by the value
range of the mode instead, before any other step, and turns the modes PIL cannot convert to
grey or RGB (LAB) into ones it can. Shared by the image-folder dataset and the upload
conversion of the app (lifelong.explore.interpolate.from_upload).

`check_pixels` refuses an image whose header declares too many pixels before it is decoded
(a tiny PNG can declare 100,000 x 100,000): the cost of a refusal is the header read.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MAX_PIXELS = 40_000_000  # ~7,700 x 5,200: a large camera picture; 160 MB at 4 bytes a pixel
U16 = 65535.0


def check_pixels(img: Image.Image, what: str, limit: int = MAX_PIXELS) -> None:
    """Raise ValueError (one line, naming `what`) when `img` declares more than `limit`
    pixels or a zero side. Call between Image.open (header only) and img.load()."""
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"{what}: image of {w}x{h} pixels has no pixels")
    if w * h > limit:
        raise ValueError(f"{what}: image of {w}x{h} pixels is over the limit of {limit:,} pixels")


def _scaled(values: np.ndarray, mode: str) -> np.ndarray:
    """float32 values of a high-depth image -> [0, 1], by the value range of its mode:
    16-bit modes by 65535; 32-bit integers by 65535 when they hold 16-bit data (PIL reads 16-bit
    PNG and PGM as `I` in some versions), else by their own min..max; floats as they are when
    inside [0, 1], else by their min..max. Non-finite values become 0."""
    v = np.where(np.isfinite(values), values, 0.0).astype(np.float32, copy=False)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= U16):
        return v / U16
    if mode == "F" and lo >= 0 and hi <= 1:
        return v
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def to_8bit(img: Image.Image) -> Image.Image:
    """Any image -> one in a mode that converts correctly to `L` and `RGB` with PIL.

    High-depth grey (`I;16`, `I;16L`, `I;16B`, `I;16N`, `I`, `F`) becomes `L` scaled by its
    value range (see `_scaled`); `LAB` becomes its lightness channel (`L`), as PIL has no LAB
    conversion; every other mode is returned unchanged (PIL converts those itself)."""
    mode = img.mode
    if mode == "LAB":
        return img.getchannel("L")
    if not (mode.startswith("I") or mode == "F"):
        return img
    values = np.asarray(img).astype(np.float32)
    if values.ndim != 2:  # not a single-channel mode after all: let PIL try
        return img
    out = np.clip(np.rint(_scaled(values, mode) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")
