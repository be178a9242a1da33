"""Real 28x28 datasets from IDX files the user already has: MNIST, Fashion-MNIST, KMNIST.

IDX format (LeCun): big-endian header `0x00 0x00 TYPE NDIM`, then NDIM uint32 sizes, then the
data in row-major order. Files may be gzipped (detected by the gzip magic bytes, whatever the
file name). Expected names in DIR, for split train / test:
    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-...
each optionally with `.gz`, and the variants `train-images.idx3-ubyte` (dot instead of dash).
Nothing is downloaded.

Files are untrusted: both headers are read first (a few bytes, even from a gzip stream) and
checked against a size cap (MAX_IMAGES), 28x28 uint8 images and one integer label per image;
only then is exactly the declared payload read, and a file holding more or fewer bytes is
refused. A gzipped file is measured by inflating it chunk by chunk without keeping the data,
so a small .gz that inflates to gigabytes is refused for about one chunk of memory.
"""

from __future__ import annotations

import gzip
import os
import zlib
from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .base import DataError

# IDX type byte -> numpy dtype (big-endian)
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
MAX_IMAGES = 300_000  # per file; MNIST-style sets hold 60,000 (EMNIST digits 240,000)
MAX_IDX_BYTES = MAX_IMAGES * 28 * 28  # any one IDX file's payload (235 MB)
CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
FASHION_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"  # Debian: dataset-fashion-mnist


class IdxHeader(NamedTuple):
    """What an IDX header declares: dtype, dims, header length and payload length in bytes."""

    dtype: np.dtype
    dims: tuple[int, ...]
    head: int
    nbytes: int


@contextmanager
def _open(path: str):
    """(stream, gzipped?) over the file's IDX bytes, inflating gzip lazily as it is read."""
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
        f.seek(0)
        if not gz:
            yield f, False
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            yield g, True


def _read_exact(stream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n and (part := stream.read(n - len(out))):
        out += part
    return bytes(out)


def idx_header(path: str, max_bytes: int = MAX_IDX_BYTES) -> IdxHeader:
    """Read and check only the header of an IDX file (gzipped or not): magic number, type,
    dimensions, and a declared payload of at most `max_bytes`. Nothing else is read."""
    name = os.path.basename(path)
    try:
        with _open(path) as (s, _):
            magic = _read_exact(s, 4)
            ok = len(magic) == 4 and magic[:2] == b"\0\0" and magic[2] in IDX_TYPES
            if not ok:
                found = magic.hex() if len(magic) == 4 else "(file too short)"
                raise DataError(f"{name} is not an IDX file: bad magic number {found} in {path}")
            ndim = magic[3]
            raw = _read_exact(s, 4 * ndim)
    except READ_ERRORS as e:
        raise DataError(f"cannot read IDX file {path}: {_why(e)}") from None
    if ndim == 0 or len(raw) < 4 * ndim:
        raise DataError(f"{name}: IDX header truncated or with 0 dimensions in {path}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4"))
    dtype = np.dtype(IDX_TYPES[magic[2]])
    nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize  # exact: no int64 overflow
    if nbytes > max_bytes:
        raise DataError(
            f"{name}: header declares dims {dims} ({nbytes:,} bytes), more than the "
            f"{max_bytes:,} bytes allowed for one IDX file"
        )
    return IdxHeader(dtype, dims, 4 + 4 * ndim, nbytes)


def _why(e: BaseException) -> str:
    return " ".join(str(getattr(e, "strerror", None) or e or type(e).__name__).split())


def read_idx(path: str, header: IdxHeader | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) -> numpy array with the dimensions in its header.

    The header is checked first (`idx_header`, or the one given); then exactly the declared
    number of bytes are read. A file holding more or fewer bytes is refused, and a gzipped one
    is measured by inflating it chunk by chunk, dropping the data, before anything is kept:
    a refused file costs its header and one chunk of memory, whatever it inflates to.
    Raises DataError, naming the file, for a bad magic number, an unknown type, too large
    declared dimensions, or a data size that does not match the header."""
    name = os.path.basename(path)
    h = header or idx_header(path)
    expect = h.head + h.nbytes
    try:
        with _open(path) as (s, gz):
            if gz:  # count the inflated bytes, stopping one chunk past what the header says
                size = 0
                while size <= expect and (part := s.read(CHUNK)):
                    size += len(part)
            else:
                size = os.fstat(s.fileno()).st_size
            if size != expect:
                holds = f"more than {expect}" if gz and size > expect else str(size)
                raise DataError(
                    f"{name}: header says dims {h.dims} ({expect} bytes) but the file holds "
                    f"{holds} bytes"
                )
        with _open(path) as (s, _):
            s.seek(h.head)  # a gzip stream seeks forward by inflating and dropping
            buf = np.empty(h.nbytes, np.uint8)
            view, got = memoryview(buf), 0
            while got < h.nbytes and (k := s.readinto(view[got : got + CHUNK])):
                got += k
    except READ_ERRORS as e:
        raise DataError(f"cannot read IDX file {path}: {_why(e)}") from None
    if got != h.nbytes:  # the file changed between the two reads
        raise DataError(f"{name}: file ended after {h.head + got} of {expect} bytes")
    return buf.view(h.dtype).reshape(h.dims).astype(h.dtype.newbyteorder("="), copy=False)


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
    """Both files' headers are checked against each other and against 28x28 images before
    either payload is read."""
    iname, lname = os.path.basename(images), os.path.basename(labels)
    hx, hy = idx_header(images), idx_header(labels, max_bytes=MAX_IMAGES * 8)
    if len(hx.dims) != 3 or hx.dtype != np.uint8:
        raise DataError(f"{iname}: expected uint8 images [N, H, W], got {hx.dtype} {list(hx.dims)}")
    if hx.dims[1:] != (28, 28):
        raise DataError(f"{iname}: expected 28x28 images, got {hx.dims[1:]}")
    if len(hy.dims) != 1 or hy.dtype.kind not in "iu":
        raise DataError(f"{lname}: expected integer labels [N], got {hy.dtype} {list(hy.dims)}")
    if hy.dims[0] != hx.dims[0]:
        raise DataError(f"{lname} has {hy.dims[0]} labels but {iname} has {hx.dims[0]} images")
    return read_idx(images, hx), read_idx(labels, hy).astype(np.int64)


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
