"""`textured`: digits or glyphs over procedural textures, the embedded analogue of Grassy-MNIST
(paper 004, Sec. 4.1: MNIST digits superimposed on ImageNet grass).

CPVAE needs populations that share some structure (the background) and differ in other
structure (the foreground). Paper 004 builds its populations from the *foreground* labels of
one grassy set: digits 0-4 vs digits 5-9 (Sec. 4.1), or one population per class (Table 2),
every image having grass behind its digit, and "the model is never shown either the original
background grass images nor the original non-noisy digits". So here every image is a
foreground over a texture and y is the foreground's class; populations are made with the usual
transform, e.g. `textured:classes=0-4,textured:classes=5-9`. (A background-only population,
as in the contrastive models the paper compares with, is not what CPVAE trains on.)
`texture=none` gives the foreground-only images of the same draws, so plain vs textured
populations (`textured:texture=none,textured`) are also one spec away.

Options (given to `load`; see the registry):
    fg=digits|glyphs            foreground: scikit-learn digits (the `digits` images and split,
                                1501 / 296) or the `glyphs` renders (5880 / 980)
    texture=grass|stripes|noise|mixed|none
        grass    oriented filtered noise thresholded into thin blades, tilted up to 25 degrees
                 from vertical, blade length varied, with a vertical light gradient
        stripes  a sinusoidal grating: orientation in [0, pi), period 4..10 px, random phase
        noise    isotropic smoothed noise (clouds), correlation length 1.5..4 px
        mixed    each image picks one of the three uniformly
        none     no background: the foreground image alone
    level=faint|strong          how bright the texture is under the foreground (below)

Compositing: x = d + (1 - d) * level * b, with d the foreground ink in [0, 1], b the texture in
[0, 1] and level ~ U(0.35, 0.65) per image ("faint", the default) or U(0.8, 1.0) ("strong"),
i.e. a white foreground painted over a texture: x >= d everywhere. Faint, the ink stays the
brightest thing in the image. Strong is closer to Grassy-MNIST, whose natural grass is as
bright as the digits: there a plain VAE spends its latent on the background and clusters the
digits worse than CPVAE's private codes (paper 004 Table 1); over the faint texture a VAE's
codes cluster the digits about as well as the private ones (tests/models/test_cpvae.py).

Determinism: the foreground draws are those of `digits` / `glyphs(split, seed)`; each texture
kind has its own random stream per (seed, split), so `texture=grass` and the grass images of
`texture=mixed` coincide, and `texture=none` is exactly the foreground of the same index.
Factors (float32 [N, 5]): class, texture (index into TEXTURES), orientation (radians), scale
(blade length / period / correlation length in px) and level; for `none` the texture is -1
and the rest 0.
Vectorised numpy (FFT filtering), ~0.1 s for the digits' 1501 images.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import embedded, glyphs
from .embedded import FRAME, split_seed

FOREGROUNDS = ("digits", "glyphs")
TEXTURES = ("grass", "stripes", "noise", "mixed", "none")
KINDS = ("grass", "stripes", "noise")  # what `mixed` draws from; their factor index
FACTORS = ["class", "texture", "orientation", "scale", "level"]
LEVELS = {"faint": (0.35, 0.65), "strong": (0.8, 1.0)}  # per-image U(lo, hi) texture level
PERIOD = (4.0, 10.0)  # stripes, px
CLOUD = (1.5, 4.0)  # noise: Gaussian correlation length, px
BLADE = (3.0, 8.0)  # grass: blade length (along-blade correlation), px
MAX_TILT = math.radians(25.0)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) [28, 28] centred on the frame."""
    r = np.arange(FRAME, dtype=np.float64) - (FRAME - 1) / 2
    return np.meshgrid(r, r, indexing="ij")


def _freqs() -> tuple[np.ndarray, np.ndarray]:
    """FFT frequencies (v, u) [28, 28] in cycles per pixel, matching np.fft.fft2's layout."""
    f = np.fft.fftfreq(FRAME)
    return np.meshgrid(f, f, indexing="ij")


def _filtered(rng: np.random.Generator, n: int, transfer: np.ndarray) -> np.ndarray:
    """White noise [n, 28, 28] filtered by `transfer` [n, 28, 28] and standardised per image."""
    white = rng.standard_normal((n, FRAME, FRAME))
    out = np.fft.ifft2(np.fft.fft2(white) * transfer).real
    out -= out.mean((1, 2), keepdims=True)
    return out / (out.std((1, 2), keepdims=True) + 1e-8)


def _stripes(rng: np.random.Generator, n: int):
    theta = rng.uniform(0, math.pi, n)
    period = rng.uniform(*PERIOD, n)
    phase = rng.uniform(0, 2 * math.pi, n)
    yy, xx = _grid()
    along = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    b = 0.5 + 0.5 * np.sin(2 * math.pi * along / period[:, None, None] + phase[:, None, None])
    return b, theta, period


def _noise(rng: np.random.Generator, n: int):
    length = rng.uniform(*CLOUD, n)
    v, u = _freqs()
    # A Gaussian blur of std `length` px has transfer exp(-2 pi^2 length^2 f^2).
    transfer = np.exp(-2 * math.pi**2 * length[:, None, None] ** 2 * (u**2 + v**2)[None])
    g = _filtered(rng, n, transfer)
    b = 1.0 / (1.0 + np.exp(-1.5 * g))  # soft contrast: blotches, not a flat grey
    return b, np.zeros(n), length


def _grass(rng: np.random.Generator, n: int):
    tilt = rng.uniform(-MAX_TILT, MAX_TILT, n)  # 0 = vertical blades
    length = rng.uniform(*BLADE, n)
    gradient = rng.uniform(0.2, 0.5, n)  # darker towards the bottom, by this much
    v, u = _freqs()
    c, s = np.cos(tilt)[:, None, None], np.sin(tilt)[:, None, None]
    # Frequency along the blade (direction (x, y) = (sin, cos)) and across it.
    f_along = u[None] * s + v[None] * c
    f_across = u[None] * c - v[None] * s
    long_blur = np.exp(-2 * math.pi**2 * length[:, None, None] ** 2 * f_along**2)
    thin = np.exp(-2 * math.pi**2 * 0.6**2 * f_across**2)  # blades ~1 px wide
    g = _filtered(rng, n, long_blur * thin)
    blades = 1.0 / (1.0 + np.exp(-4.0 * (g - 0.3)))
    yy, _ = _grid()
    light = 1.0 - gradient[:, None, None] * (yy[None] / (FRAME - 1) + 0.5)
    return blades * light, tilt, length


_MAKERS = {"grass": _grass, "stripes": _stripes, "noise": _noise}


def _texture(kind: str, split: str, seed: int, n: int):
    """(images [n, 28, 28] in [0, 1], orientation [n], scale [n]) of one kind, from the kind's
    own stream so every option that shows this kind shows the same images."""
    rng = split_seed(seed, split, tag=10 + KINDS.index(kind))
    b, orient, scale = _MAKERS[kind](rng, n)
    return np.clip(b, 0.0, 1.0), orient, scale


def _foreground(fg: str, split: str, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if fg == "digits":
        x, y = embedded.digits(split)
        return x, y, embedded.DIGIT_CLASSES
    x, y = glyphs.glyphs(split, seed)
    return x, y, glyphs.GLYPH_CLASSES


@lru_cache(maxsize=8)
def textured(
    split: str, seed: int, fg: str = "digits", texture: str = "grass", level: str = "faint"
):
    """Images float32 [N, 28, 28] in [0, 1], labels int64 [N] (the foreground's class), class
    names, factors float32 [N, 5] (FACTORS). N is that of the foreground's split."""
    if fg not in FOREGROUNDS or texture not in TEXTURES or level not in LEVELS:
        raise ValueError(
            f"fg must be one of {FOREGROUNDS}, texture one of {TEXTURES}, level one of "
            f"{tuple(LEVELS)}"
        )
    d, y, classes = _foreground(fg, split, seed)
    n = len(d)
    factors = np.zeros((n, len(FACTORS)), np.float32)
    factors[:, 0] = y
    if texture == "none":
        factors[:, 1] = -1
        return d.copy(), y, classes, factors
    rng = split_seed(seed, split, tag=9)  # per-image level and, for mixed, kind
    # The same uniform draws for both levels, rescaled: only the brightness differs.
    lo, hi = LEVELS[level]
    level = lo + (hi - lo) * rng.uniform(0.0, 1.0, n)
    pick = rng.integers(0, len(KINDS), n)
    kinds = KINDS if texture == "mixed" else (texture,)
    b = np.empty((n, FRAME, FRAME))
    for kind in kinds:
        rows = (pick == KINDS.index(kind)) if texture == "mixed" else np.ones(n, bool)
        img, orient, scale = _texture(kind, split, seed, n)
        b[rows] = img[rows]
        factors[rows, 1] = KINDS.index(kind)
        factors[rows, 2] = orient[rows]
        factors[rows, 3] = scale[rows]
    factors[:, 4] = level
    x = d + (1.0 - d) * level[:, None, None] * b
    return np.clip(x, 0.0, 1.0).astype(np.float32), y, classes, factors
