"""Real datasets from files a user already has, in their distributed formats: SVHN (.mat),
CIFAR-10 (the binary version) and an image folder. Nothing is downloaded, nothing unpickled.

    svhn:path=DIR      train_32x32.mat / test_32x32.mat (MATLAB v5: headers checked by matv5,
                       then read with scipy.io.loadmat; label 10 means digit 0, as documented)
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
Errors are DataError with one line naming the file and what is wrong. Sizes are checked before
anything is allocated (a file's size, a .mat's declared shapes and the size its compressed
data inflate to, an image's declared pixels, the number of files in a folder), so a hostile
file is refused for the cost of reading its headers.
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

from . import matv5, pixels
from .base import DataError

MODES = ("rgb", "grey")
SVHN_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR_RECORD = 1 + 3 * 32 * 32
FOLDER_SIZE = 28
FOLDER_MAX_IMAGES = 200_000
FOLDER_MAX_ENTRIES = 4 * FOLDER_MAX_IMAGES  # directory entries scanned, images or not
FOLDER_MAX_CLASSES = 1000
SVHN_MAX_IMAGES = 100_000  # train_32x32.mat holds 73,257 (extra_32x32.mat is not read)
CIFAR_MAX_RECORDS = 60_000  # per batch file; the real ones hold 10,000
NUMERIC_CLASSES = (
    "double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
)  # fmt: skip
MAT_SLACK = 1 << 16  # a .mat's element headers and names, beyond its arrays' bytes
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
TEST_SHARE = 0.15
SPLITS_DIRS = ("train", "test")


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


def _check_mat(path: str) -> None:
    """Refuse, before scipy allocates anything, a .mat whose X and y are not SVHN-shaped, hold
    more than SVHN_MAX_IMAGES images, or inflate to more bytes than its declared variables
    need (a small declared X over a zlib bomb would make scipy allocate the bomb's size).
    The headers are read by matv5, which counts inflated bytes without keeping them."""
    name = os.path.basename(path)
    limit = SVHN_MAX_IMAGES * (3 * 32 * 32 + 8) + MAT_SLACK  # X, y as doubles, headers
    try:
        found, total = matv5.variables(path, limit)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if "X" not in found or "y" not in found:
        raise DataError(f"{name}: expected variables X and y, found {sorted(found)}")
    (xs, xc), (ys, yc) = found["X"], found["y"]
    if len(xs) != 4 or xs[:3] != (32, 32, 3) or xc != "uint8" or xs[3] < 0:
        raise DataError(f"{name}: expected X uint8 [32, 32, 3, N], got {xc} {list(xs)}")
    if xs[3] > SVHN_MAX_IMAGES:
        raise DataError(f"{name}: {xs[3]:,} images, more than the {SVHN_MAX_IMAGES:,} allowed")
    if math.prod(ys) != xs[3] or min(ys, default=0) < 0 or yc not in NUMERIC_CLASSES:
        raise DataError(f"{name}: expected {xs[3]} numeric labels in y, got {yc} {list(ys)}")
    # what the declared variables can hold: X in bytes, every other element as doubles
    need = math.prod(xs) + sum(8 * abs(math.prod(sh)) for v, (sh, _) in found.items() if v != "X")
    if total > need + MAT_SLACK:
        raise DataError(f"{name}: data inflate to {total:,} bytes, more than X and y declare")


@lru_cache(maxsize=2)
def _read_mat(path: str, _stamp: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    name = os.path.basename(path)
    _check_mat(path)
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy's parser on a file the checks above let through
        raise DataError(f"{name} is not a readable .mat file ({type(e).__name__})") from None
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{name}: expected X uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    if len(y) != x.shape[3]:
        raise DataError(f"{name}: {len(y)} labels for {x.shape[3]} images")
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise DataError(f"{name}: labels must be whole numbers in 0..10")
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
        size = os.path.getsize(p)  # checked before a byte is read
        if size == 0 or size % CIFAR_RECORD or size > CIFAR_MAX_RECORDS * CIFAR_RECORD:
            raise DataError(
                f"{os.path.basename(p)}: {size} bytes is not a whole number of "
                f"{CIFAR_RECORD}-byte CIFAR-10 records (1 to {CIFAR_MAX_RECORDS:,} of them)"
            )
        try:
            raw = np.fromfile(p, np.uint8, count=size)
        except OSError as e:
            raise DataError(f"cannot read {p}: {e.strerror or e}") from None
        if len(raw) != size:
            raise DataError(f"{os.path.basename(p)}: changed while it was read")
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
    """One image file -> uint8 [S, S] (grey) or [3, S, S]: declared size checked before
    decoding, EXIF orientation, high-depth values scaled (pixels.to_8bit), transparency on
    black (the datasets here draw light on dark), centre crop to a square, resize."""
    try:
        with Image.open(path) as im:
            pixels.check_pixels(im, path)
            im.load()
            img = pixels.to_8bit(ImageOps.exif_transpose(im))
        if img.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa"):
            img = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img)
        img = img.convert("L" if mode == "grey" else "RGB")
    except DataError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own guard, before check_pixels
        raise DataError(f"{path}: {e}") from None
    except ValueError as e:  # check_pixels, or a mode PIL cannot convert
        msg = " ".join(str(e).split())
        raise DataError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    except Exception as e:  # PIL's parsers on any file (UnidentifiedImageError, ...): one line
        raise DataError(f"{path}: not a readable image ({type(e).__name__})") from None
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((FOLDER_SIZE, FOLDER_SIZE), Image.Resampling.LANCZOS)
    arr = np.asarray(img, np.uint8)
    return arr if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _class_files(root: str) -> dict[str, list[str]]:
    """Class name -> its image files (sorted paths), for the class sub-folders of `root`.
    Hidden entries are skipped; listing stops with a DataError past FOLDER_MAX_ENTRIES
    entries, FOLDER_MAX_CLASSES classes or FOLDER_MAX_IMAGES images, so a folder of millions
    of files costs a bounded scan."""
    seen = 0

    def entries(d: str):
        nonlocal seen
        with os.scandir(d) as it:
            for e in it:
                seen += 1
                if seen > FOLDER_MAX_ENTRIES:
                    raise DataError(f"{root}: more than {FOLDER_MAX_ENTRIES:,} files and folders")
                if not e.name.startswith("."):
                    yield e

    try:
        classes = sorted(e.name for e in entries(root) if e.is_dir())
        if len(classes) > FOLDER_MAX_CLASSES:
            raise DataError(f"{root}: {len(classes)} class folders, at most {FOLDER_MAX_CLASSES}")
        out, n = {}, 0
        for c in classes:
            files = sorted(
                f.path
                for f in entries(os.path.join(root, c))
                if os.path.splitext(f.name)[1].lower() in IMAGE_EXTS and f.is_file()
            )
            n += len(files)
            if n > FOLDER_MAX_IMAGES:
                raise DataError(f"{root}: more than {FOLDER_MAX_IMAGES:,} images")
            if files:
                out[c] = files
    except OSError as e:
        raise DataError(f"cannot list {e.filename or root}: {e.strerror or e}") from None
    return out


def _in_test(name: str) -> bool:
    """Fixed split by file name: the same file is always on the same side, whatever else the
    folder holds (a hash, not an index, so adding files does not move others)."""
    h = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big")
    return h / 2**32 < TEST_SHARE


def _has_splits(d: str) -> bool:
    return os.path.isdir(os.path.join(d, "train")) and os.path.isdir(os.path.join(d, "test"))


def folder_classes(directory: str) -> list[str]:
    """The class names (sub-folder names, sorted) of an image folder."""
    d = _dir(directory)
    return list(_class_files(os.path.join(d, "train") if _has_splits(d) else d))


@lru_cache(maxsize=4)
def _read_folder(d: str, split: str, mode: str, classes: tuple, files: tuple, _stamp: tuple):
    """Decode the split's files ((class, paths) pairs, listed and bounded by `folder`)."""
    xs, ys = [], []
    one_folder = not _has_splits(d)  # then a fixed 85/15 split by file name
    for c, paths in files:
        for p in paths:
            if one_folder and _in_test(os.path.basename(p)) != (split == "test"):
                continue
            xs.append(_convert(p, mode))
            ys.append(classes.index(c))
    if not xs:
        raise DataError(f"{d}: the {split} split has no images")
    return np.stack(xs), np.asarray(ys, np.int64), list(classes)


def folder(directory: str, split: str, mode: str = "grey"):
    """uint8 [N, 28, 28] (grey) or [N, 3, 28, 28], labels int64 [N], class names."""
    d = _dir(directory)
    splits = _has_splits(d)
    train = _class_files(os.path.join(d, "train") if splits else d)
    if not train:
        raise DataError(f"{d}: no class sub-folders with images ({', '.join(sorted(IMAGE_EXTS))})")
    files = _class_files(os.path.join(d, split)) if splits and split != "train" else train
    for c in files:
        if c not in train:
            raise DataError(f"{d}/{split}: class folder '{c}' is not in {d}/train")
    # cache key: the file lists and the modification times of the folders (adding, removing
    # or renaming a file changes its folder's), so edited folders are read again
    dirs = [d, *(os.path.join(d, s) for s in SPLITS_DIRS if splits)]
    dirs += [os.path.dirname(p[0]) for listing in (train, files) for p in listing.values()]
    try:
        stamp = tuple(os.stat(x).st_mtime_ns for x in dirs)
    except OSError as e:
        raise DataError(f"cannot read {e.filename}: {e.strerror}") from None
    key = tuple((c, tuple(p)) for c, p in files.items())
    return _read_folder(d, split, mode, tuple(train), key, stamp)
