"""`glyphs`: letters and digits rendered from fonts that the pinned packages ship, with random
affine jitter and stroke width, normalised into a 20x20 box in a 28x28 frame like MNIST.

Fonts: Pillow's own scalable default font (Aileron Regular, `ImageFont.load_default(size=)`)
plus a fixed list of TTFs from matplotlib's `mpl-data/fonts/ttf` (DejaVu Sans / Serif / Sans
Mono in regular, bold, oblique/italic, bold oblique/italic; STIX General in the same four;
Computer Modern cmr10, cmb10, cmti10, cmss10, cmtt10). No system fonts, so the data are the same
on every machine with the pinned requirements. cmmi10 (old-style digits) and the *Display
fonts (Latin letters missing) are left out.

Merge rule. After normalisation to the box (aspect kept, long side fixed) a character that is
only a scaled copy of another, or that coincides with it in some of the fonts, cannot be told
apart from it. Such characters form one class, named by its first member:
    O = {O, o, 0}   I = {I, l, 1}   C = {C, c}   K = {K, k}   P = {P, p}   S = {S, s}
    U = {U, u}      V = {V, v}      W = {W, w}   X = {X, x}   Z = {Z, z}
(c/o/s/v/w/x/z are scaled capitals; u, k and p match U, K and P once the x-height or
descender is stretched to the box; 0 is a narrow O and l is I in sans fonts and 1 in serif
fonts.) Every other character of 0-9, A-Z, a-z is its own class: 49 classes in all. A merged
class draws its members equally often.

Sizes: 120 train and 20 test images per class (5880 / 980), classes balanced, in random order.
Per image: font uniform over the list; rotation uniform in +-15 degrees; aspect jitter
(width/height scaled by e^u, u in +-0.15); long side uniform in 16..20 px; shift of the centre
of mass uniform in +-1.5 px; with probability 1/2 a 3x3 max filter at 2x resolution, i.e.
about 1 px of extra stroke at 28 px (the box is shrunk by 1 px first so ink stays <= 20 px).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .embedded import FRAME, paste_by_mass, split_seed

MERGED = ["O0o", "I1l", "Cc", "Kk", "Pp", "Ss", "Uu", "Vv", "Ww", "Xx", "Zz"]
ALL_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

MPL_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
RENDER_SIZE = 64  # font size of the master renders (capitals ~47 px tall)
PER_CLASS = {"train": 120, "test": 20}
MAX_ROTATION = 15.0
MAX_LOG_ASPECT = 0.15
LONG_SIDE = (16.0, 20.0)
MAX_SHIFT = 1.5


def _class_members() -> list[str]:
    """Member characters of each class, in class order: digits, capitals, lower case."""
    merged = {m[0]: m for m in MERGED}
    dropped = {c for m in MERGED for c in m[1:]}
    return [merged.get(c, c) for c in ALL_CHARS if c not in dropped]


MEMBERS = _class_members()
GLYPH_CLASSES = [m[0] for m in MEMBERS]  # 49 names: "2".."9", "A".."Z", "a", "b", "d", ...
GLYPHS_TRAIN = PER_CLASS["train"] * len(GLYPH_CLASSES)
GLYPHS_TEST = PER_CLASS["test"] * len(GLYPH_CLASSES)


@lru_cache(maxsize=1)
def fonts() -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """(name, font at RENDER_SIZE) for the fixed font list: Pillow's default first."""
    import matplotlib

    ttf = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    out = [("pillow-default", ImageFont.load_default(size=RENDER_SIZE))]
    out += [(f, ImageFont.truetype(os.path.join(ttf, f), RENDER_SIZE)) for f in MPL_FONTS]
    return out


@lru_cache(maxsize=2048)
def _master(font_index: int, char: str) -> Image.Image:
    """High-resolution 'L' render of one character, white on black, with a 4 px border."""
    font = fonts()[font_index][1]
    left, top, right, bottom = font.getbbox(char)
    im = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(im).text((4 - left, 4 - top), char, fill=255, font=font)
    return im


_THRESH = [0] * 48 + [255] * 208  # lookup table: ink = pixel > 47 (ignores faint antialiasing)


def _render(
    img: Image.Image,
    angle: float,
    log_aspect: float,
    long_side: float,
    bold: bool,
    shift: tuple[float, float],
) -> np.ndarray:
    """One jittered glyph -> float32 [28, 28]. Work at 2x resolution (56x56) and box-downsample,
    so the optional max filter adds at most ~1 px of stroke at 28 px."""
    rot = img.rotate(angle, resample=Image.BICUBIC, expand=True)
    box = rot.point(_THRESH).getbbox()
    if box is None:
        return np.zeros((FRAME, FRAME), np.float32)
    crop = rot.crop(box)
    w = crop.width * np.exp(log_aspect)
    h = crop.height * np.exp(-log_aspect)
    target = 2 * long_side - (2 if bold else 0)
    k = target / max(w, h)
    crop = crop.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR)
    if bold:
        pad = Image.new("L", (crop.width + 2, crop.height + 2), 0)
        pad.paste(crop, (1, 1))
        crop = pad.filter(ImageFilter.MaxFilter(3))
    patch = np.asarray(crop, np.float32) / 255.0
    canvas = paste_by_mass(patch, 2 * FRAME, margin=2, shift=(2 * shift[0], 2 * shift[1]))
    small = Image.fromarray(canvas).reduce(2)
    return np.clip(np.asarray(small, np.float32), 0.0, 1.0)


@lru_cache(maxsize=4)
def glyphs(split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Glyph split: images float32 [N, 28, 28] in [0, 1], labels int64 [N] (index into
    GLYPH_CLASSES); N = 5880 train, 980 test. Deterministic given (split, seed); train and test
    use independent random streams."""
    rng = split_seed(seed, split, tag=1)
    labels = rng.permutation(np.repeat(np.arange(len(GLYPH_CLASSES)), PER_CLASS[split]))
    n = len(labels)
    font_idx = rng.integers(0, len(fonts()), n)
    member = rng.random(n)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION, n)
    log_aspect = rng.uniform(-MAX_LOG_ASPECT, MAX_LOG_ASPECT, n)
    long_side = rng.uniform(*LONG_SIDE, n)
    bold = rng.random(n) < 0.5
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (n, 2))
    x = np.empty((n, FRAME, FRAME), np.float32)
    for i in range(n):
        chars = MEMBERS[labels[i]]
        char = chars[int(member[i] * len(chars))]
        x[i] = _render(
            _master(int(font_idx[i]), char),
            angle[i],
            log_aspect[i],
            long_side[i],
            bool(bold[i]),
            (shift[i, 0], shift[i, 1]),
        )
    return x, labels.astype(np.int64)
