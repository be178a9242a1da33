"""Real 28x28 datasets from IDX files the user already has: MNIST, Fashion-MNIST, KMNIST.

IDX format (LeCun): big-endian header `0x00 0x00 TYPE NDIM`, then NDIM uint32 sizes, then the
data in row-major order. Files may be gzipped (detected by the gzip magic bytes, whatever the
file name). Expected names in DIR, for split train / test:
    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-...
each optionally with `.gz`, and the variants `train-images.idx3-ubyte` (dot instead of dash).
Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache

import numpy as np

from .base import DataError

# IDX type byte -> numpy dtype (big-endian)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
FASHION_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzipped or not) -> numpy array with the dimensions in its header.

    Raises DataError, naming the file, for a bad magic number, an unknown type, or a data size
    that does not match the header."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        magic = raw[:4].hex() if len(raw) >= 4 else "(file too short)"
        raise DataError(f"{name} is not an IDX file: bad magic number {magic} in {path}")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(raw) < head:
        raise DataError(f"{name}: IDX header truncated or with 0 dimensions in {path}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expect = head + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expect:
        raise DataError(
            f"{name}: header says dims {dims} ({expect} bytes) but file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx(directory: str, split: str, kind: str) -> str:
    """Path of the `kind` ('images' or 'labels') file of `split` in `directory`."""
    prefix = "train" if split == "train" else "t10k"
    ext = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    names = [f"{prefix}-{kind}-{ext}", f"{prefix}-{kind}.{ext}"]
    for n in names:
        for cand in (n, n + ".gz"):
            p = os.path.join(directory, cand)
            if os.path.isfile(p):
                return p
    raise DataError(f"no {names[0]}[.gz] (or {names[1]}[.gz]) in {directory}")


@lru_cache(maxsize=4)
def _load(images: str, labels: str, _stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(
            f"{os.path.basename(images)}: expected uint8 images [N, H, W], "
            f"got {x.dtype} {list(x.shape)}"
        )
    if x.shape[1:] != (28, 28):
        raise DataError(f"{os.path.basename(images)}: expected 28x28 images, got {x.shape[1:]}")
    if y.ndim != 1:
        raise DataError(f"{os.path.basename(labels)}: expected labels [N], got {list(y.shape)}")
    if len(y) != len(x):
        raise DataError(
            f"{os.path.basename(labels)} has {len(y)} labels but "
            f"{os.path.basename(images)} has {len(x)} images"
        )
    return x, y.astype(np.int64)


def load_idx_split(directory: str, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of one split from an IDX directory.
    Cached in-process (keyed by file modification times, so replaced files are re-read)."""
    directory = os.path.expanduser(directory)
    if not os.path.isdir(directory):
        raise DataError(f"dataset directory not found: {directory}")
    images = find_idx(directory, split, "images")
    labels = find_idx(directory, split, "labels")
    stamp = (os.stat(images).st_mtime_ns, os.stat(labels).st_mtime_ns)
    x, y = _load(images, labels, stamp)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{os.path.basename(labels)}: labels must be in 0..{n_classes - 1}, "
            f"found {int(y.min())}..{int(y.max())}"
        )
    return x, y
