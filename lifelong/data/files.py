"""Real datasets from files a user already has, in their distributed formats: SVHN (.mat),
CIFAR-10 (the binary version) and an image folder. Nothing is downloaded, nothing unpickled.

    svhn:path=DIR      train_32x32.mat / test_32x32.mat (MATLAB v5, read with scipy.io.loadmat,
                       which parses the format itself; label 10 means digit 0, as documented)
    cifar10:path=DIR   data_batch_1..5.bin / test_batch.bin (cifar-10-binary.tar.gz, folder
                       cifar-10-batches-bin): 1 label byte + 3072 pixel bytes per record.
                       The "python version" (cifar-10-batches-py) is a set of pickles, which
                       this project never loads (DESIGN.md): it is refused with a pointer to
                       the binary version of the same data.
    folder:path=DIR    one sub-folder per class (sorted names are the classes), images of any
                       format PIL reads; DIR/train and DIR/test, when both exist, are the
                       splits, otherwise a fixed 85/15 split of each class by file name.

All three take `mode=rgb|grey` (svhn and cifar10 default to rgb at 32x32; folder to grey at
28x28, so it chains with the 28x28 datasets); `size=N` resizes afterwards as for any dataset.
Errors are DataError with one line naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import DataError

MODES = ("rgb", "grey")
SVHN_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR_RECORD = 1 + 3 * 32 * 32
FOLDER_SIZE = 28
FOLDER_MAX_IMAGES = 200_000
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
TEST_SHARE = 0.15


def _dir(path: str) -> str:
    d = os.path.expanduser(path)
    if not os.path.isdir(d):
        raise DataError(f"dataset directory not found: {d}")
    return d


def to_mode(x: np.ndarray, mode: str) -> np.ndarray:
    """uint8 [N, 3, H, W] -> itself (rgb) or ITU-R 601 luma [N, H, W] (grey), uint8."""
    if mode == "rgb":
        return x
    w = np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]
    return np.clip((x.astype(np.float32) * w).sum(1) + 0.5, 0, 255).astype(np.uint8)


# -- SVHN --------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _read_mat(path: str, _stamp: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    name = os.path.basename(path)
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise DataError(f"{name}: MATLAB v7.3 (HDF5) files are not supported; use v5") from None
    except (ValueError, OSError, TypeError) as e:
        raise DataError(f"{name} is not a readable .mat file: {e}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{name}: expected variables X and y, found {sorted(mat)}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{name}: expected X uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    if len(y) != x.shape[3]:
        raise DataError(f"{name}: {len(y)} labels for {x.shape[3]} images")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DataError(f"{name}: labels must be in 0..10, found {y.min()}..{y.max()}")
    y[y == 10] = 0  # SVHN's documented convention: label 10 is the digit 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def svhn(directory: str, split: str, mode: str = "rgb") -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 3, 32, 32] (or [N, 32, 32] grey) and labels int64 [N] in 0..9."""
    path = os.path.join(_dir(directory), f"{split}_32x32.mat")
    if not os.path.isfile(path):
        raise DataError(f"no {split}_32x32.mat in {directory}")
    x, y = _read_mat(path, os.stat(path).st_mtime_ns)
    return to_mode(x, mode), y


# -- CIFAR-10 (binary version) -----------------------------------------------------------------


@lru_cache(maxsize=2)
def _read_cifar(paths: tuple[str, ...], _stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        raw = np.fromfile(p, np.uint8)
        if len(raw) == 0 or len(raw) % CIFAR_RECORD:
            raise DataError(
                f"{os.path.basename(p)}: {len(raw)} bytes is not a whole number of "
                f"{CIFAR_RECORD}-byte CIFAR-10 records"
            )
        rec = raw.reshape(-1, CIFAR_RECORD)
        if rec[:, 0].max() > 9:
            raise DataError(f"{os.path.basename(p)}: label {rec[:, 0].max()} outside 0..9")
        ys.append(rec[:, 0].astype(np.int64))
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(xs), np.concatenate(ys)


def cifar10(directory: str, split: str, mode: str = "rgb") -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 3, 32, 32] (or [N, 32, 32] grey) and labels int64 [N] in 0..9."""
    d = _dir(directory)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    paths = tuple(os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n)))
    if not paths:
        if os.path.isfile(os.path.join(d, "data_batch_1")) or os.path.isfile(
            os.path.join(d, "test_batch")
        ):
            raise DataError(
                f"{d} holds CIFAR-10's python version (pickles), which this project never "
                "loads; use the binary version (cifar-10-binary.tar.gz, cifar-10-batches-bin)"
            )
        raise DataError(f"no {names[0]} in {d} (CIFAR-10 binary version expected)")
    x, y = _read_cifar(paths, tuple(os.stat(p).st_mtime_ns for p in paths))
    return to_mode(x, mode), y


# -- image folder ------------------------------------------------------------------------------


def _convert(path: str, mode: str) -> np.ndarray:
    """One image file -> uint8 [S, S] (grey) or [3, S, S]: EXIF orientation, transparency on
    black (the datasets here draw light on dark), centre crop to a square, resize."""
    try:
        with Image.open(path) as im:
            im.load()
            img = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__})") from None
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
    img = img.convert("L" if mode == "grey" else "RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((FOLDER_SIZE, FOLDER_SIZE), Image.Resampling.LANCZOS)
    arr = np.asarray(img, np.uint8)
    return arr if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _class_files(root: str) -> dict[str, list[str]]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    out = {}
    for c in classes:
        files = sorted(
            f.path
            for f in os.scandir(os.path.join(root, c))
            if f.is_file() and os.path.splitext(f.name)[1].lower() in IMAGE_EXTS
        )
        if files:
            out[c] = files
    return out


def _in_test(name: str) -> bool:
    """Fixed split by file name: the same file is always on the same side, whatever else the
    folder holds (a hash, not an index, so adding files does not move others)."""
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big")
    return h / 2**32 < TEST_SHARE


def folder_classes(directory: str) -> list[str]:
    """The class names (sub-folder names, sorted) of an image folder."""
    d = _dir(directory)
    split = os.path.join(d, "train")
    root = split if os.path.isdir(split) and os.path.isdir(os.path.join(d, "test")) else d
    return list(_class_files(root))


@lru_cache(maxsize=4)
def _read_folder(directory: str, split: str, mode: str, _stamp: tuple):
    d = directory
    has_splits = os.path.isdir(os.path.join(d, "train")) and os.path.isdir(os.path.join(d, "test"))
    classes = folder_classes(d)
    if not classes:
        raise DataError(f"{d}: no class sub-folders with images ({', '.join(sorted(IMAGE_EXTS))})")
    files = _class_files(os.path.join(d, split) if has_splits else d)
    xs, ys = [], []
    for c, paths in files.items():
        if c not in classes:
            raise DataError(f"{d}/{split}: class folder '{c}' is not in {d}/train")
        for p in paths:
            if not has_splits and _in_test(os.path.basename(p)) != (split == "test"):
                continue
            xs.append(_convert(p, mode))
            ys.append(classes.index(c))
            if len(xs) > FOLDER_MAX_IMAGES:
                raise DataError(f"{d}: more than {FOLDER_MAX_IMAGES} images in the {split} split")
    if not xs:
        raise DataError(f"{d}: the {split} split has no images")
    return np.stack(xs), np.asarray(ys, np.int64), classes


def folder(directory: str, split: str, mode: str = "grey"):
    """uint8 [N, 28, 28] (grey) or [N, 3, 28, 28], labels int64 [N], class names."""
    d = _dir(directory)
    # cache key: the modification times of every folder (adding or replacing a file changes
    # its folder's), so edited folders are read again
    stamp = tuple((r, os.stat(r).st_mtime_ns) for r, _, _ in os.walk(d))
    return _read_folder(d, split, mode, stamp)
