"""Embedded datasets that need no download: `digits` (real, from scikit-learn) and `shapes`
(dSprites-like, generated), plus the MNIST-style box normalisation shared with `glyphs`.

Every generator returns numpy arrays: images float32 [N, 28, 28] in [0, 1], labels int64 [N]
(and for shapes factors float32 [N, 5]); the registry turns them into tensors and applies
transforms. Results are cached in-process, so repeated loads are free.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

FRAME = 28  # output images are FRAME x FRAME, like MNIST
BOX = 20  # the digit (or glyph) is fitted into a BOX x BOX box, long side = BOX, as in MNIST

DIGIT_CLASSES = [str(i) for i in range(10)]
# Per-class counts of sklearn's load_digits and the resulting fixed split (every 6th image of
# each class, in dataset order, goes to test). Checked against the data by the tests.
DIGIT_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
DIGITS_TEST = sum(n // 6 for n in DIGIT_COUNTS)  # 296
DIGITS_TRAIN = sum(DIGIT_COUNTS) - DIGITS_TEST  # 1501

SHAPE_CLASSES = ["square", "ellipse", "heart", "triangle"]
SHAPE_FACTORS = ["shape", "scale", "orientation", "x", "y"]
SHAPES_PER_CLASS = {"train": 1500, "test": 250}  # 6000 / 1000 images
# scale 1 = circumscribed circle of diameter 24 px (fits the frame at any rotation); the minimum
# 0.55 keeps the smallest hearts (~12 px wide) clearly hearts, with a visible cleft, at 28x28
SHAPE_SCALE = (0.55, 1.0)
SHAPE_DIAMETER = 24.0


def split_seed(seed: int, split: str, tag: int) -> np.random.Generator:
    """Independent random stream per (seed, split, dataset) so train and test never share
    draws and different datasets never share streams."""
    return np.random.default_rng([int(seed), 0 if split == "train" else 1, tag])


def paste_by_mass(patch: np.ndarray, size: int, margin: int, shift=(0.0, 0.0)) -> np.ndarray:
    """Paste `patch` [h, w] (h, w <= size - 2*margin) into a zero [size, size] canvas so that
    its centre of mass lands on the canvas centre (MNIST's rule), moved by `shift` (dy, dx)
    pixels, then clamped so the patch keeps `margin` pixels from every edge."""
    h, w = patch.shape
    total = float(patch.sum())
    if total > 0:
        cy = float((patch.sum(1) * (np.arange(h) + 0.5)).sum()) / total
        cx = float((patch.sum(0) * (np.arange(w) + 0.5)).sum()) / total
    else:
        cy, cx = h / 2, w / 2
    top = int(round(size / 2 - cy + shift[0]))
    left = int(round(size / 2 - cx + shift[1]))
    top = min(max(top, margin), size - margin - h)
    left = min(max(left, margin), size - margin - w)
    out = np.zeros((size, size), np.float32)
    out[top : top + h, left : left + w] = patch
    return out


def fit_box(img: np.ndarray, long_side: float, thresh: float = 0.0) -> np.ndarray:
    """Crop float image `img` [H, W] to the bounding box of pixels > `thresh` and resize it,
    keeping the aspect ratio, so its longer side is `long_side` pixels. Returns [h, w]."""
    rows = np.flatnonzero((img > thresh).any(1))
    cols = np.flatnonzero((img > thresh).any(0))
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    crop = img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    k = long_side / max(h, w)
    th, tw = max(1, round(h * k)), max(1, round(w * k))
    small = Image.fromarray(np.ascontiguousarray(crop, np.float32)).resize((tw, th), Image.BILINEAR)
    return np.clip(np.asarray(small, np.float32), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# digits


def _digit_to_frame(img8: np.ndarray) -> np.ndarray:
    """One sklearn digit (8x8, values 0..16) -> float32 [28, 28] MNIST-style.

    Upsample 8x bicubic (smooth strokes, not blocks), sharpen the contrast with a soft threshold
    so strokes saturate like MNIST pen strokes, fit the ink into a 20x20 box (long side 20,
    aspect kept) and paste it centred by centre of mass, as MNIST was made."""
    im = Image.fromarray((img8 / 16.0).astype(np.float32))
    up = np.asarray(im.resize((64, 64), Image.BICUBIC), np.float32)
    ink = np.clip((up - 0.25) / 0.4, 0.0, 1.0)
    return paste_by_mass(fit_box(ink, BOX), FRAME, margin=1)


@lru_cache(maxsize=1)
def _digits_all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    x = np.stack([_digit_to_frame(im) for im in d.images])
    return x, d.target.astype(np.int64)


def digit_split_mask(y: np.ndarray) -> np.ndarray:
    """Boolean [N]: True for test images. Every 6th image of each class (by dataset order) is
    test: fixed, stratified, and identical on every machine without any random generator."""
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[idx[5::6]] = True
    return test


@lru_cache(maxsize=2)
def digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Digits split: images float32 [N, 28, 28], labels int64 [N] (N = 1501 train, 296 test).
    Real data, so the seed does not apply."""
    x, y = _digits_all()
    keep = digit_split_mask(y) == (split == "test")
    return x[keep], y[keep]


# ----------------------------------------------------------------------------------------------
# shapes


def _unit_shapes() -> list[np.ndarray]:
    """Outline polygons [P, 2] (x, y with y pointing down) of the four shapes, centred at 0 and
    scaled so the farthest point is at radius 0.5 (all fit a unit circle at any rotation)."""
    a = 0.5 / math.sqrt(2)
    square = np.array([[-a, -a], [a, -a], [a, a], [-a, a]])
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    ellipse = np.stack([0.5 * np.cos(t), 0.28 * np.sin(t)], 1)
    t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
    hx = 16 * np.sin(t) ** 3
    hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    heart = np.stack([hx, hy], 1)
    heart -= (heart.max(0) + heart.min(0)) / 2
    heart *= 0.5 / np.linalg.norm(heart, axis=1).max()
    ang = np.deg2rad([-90, 30, 150])
    triangle = 0.5 * np.stack([np.cos(ang), np.sin(ang)], 1)
    return [square, ellipse, heart, triangle]


@lru_cache(maxsize=4)
def shapes(split: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dSprites-like shapes: images float32 [N, 28, 28], labels int64 [N] (index into
    SHAPE_CLASSES), factors float32 [N, 5] = (shape, scale, orientation, x, y).

    scale in [0.55, 1]: diameter of the circumscribed circle is 24*scale px.
    orientation in [0, 2*pi): counter-clockwise rotation as displayed (the factor is the value
    used even where a shape is symmetric, as in dSprites). x, y in [0, 1]: position of the
    shape's centre between the leftmost/topmost and rightmost/bottommost places where the
    rotated shape still lies wholly inside the frame with a 1 px margin (0 = left / top).
    Drawn at 4x resolution and box-downsampled, so edges are antialiased. 1500 (train) or 250
    (test) images per shape, in random order, deterministic given (split, seed)."""
    rng = split_seed(seed, split, tag=2)
    per = SHAPES_PER_CLASS[split]
    labels = rng.permutation(np.repeat(np.arange(len(SHAPE_CLASSES)), per))
    n = len(labels)
    scale = rng.uniform(*SHAPE_SCALE, n)
    theta = rng.uniform(0, 2 * math.pi, n)
    pos = rng.uniform(0, 1, (n, 2))
    polys = _unit_shapes()
    up = 4
    x = np.empty((n, FRAME, FRAME), np.float32)
    for i in range(n):
        c, s = math.cos(theta[i]), math.sin(theta[i])
        rot = np.array([[c, -s], [s, c]])  # y down: this turns counter-clockwise on screen
        pts = polys[labels[i]] @ rot * (SHAPE_DIAMETER * scale[i])
        half = np.abs(pts).max(0) + 1.0  # half extent + 1 px margin, per axis
        centre = half + pos[i] * (FRAME - 2 * half)
        pts = (pts + centre) * up
        canvas = Image.new("L", (FRAME * up, FRAME * up), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=255)
        x[i] = np.asarray(canvas.reduce(up), np.float32) / 255.0
    factors = np.stack([labels, scale, theta, pos[:, 0], pos[:, 1]], 1).astype(np.float32)
    return x, labels.astype(np.int64), factors
