"""What a MATLAB v5 .mat file declares, read without trusting it: each top-level variable's
name, class and dimensions, and the bytes its data take once inflated.

scipy's `whosmat` inflates a compressed variable whole to list it (a 30 KB file whose X
declares 4 images but inflates to 32 MB cost 81 MB there), and `loadmat` allocates what the
data elements claim. Reading the headers here first, and counting inflated bytes chunk by
chunk without keeping them, lets the SVHN loader refuse a bomb for about one chunk of memory.

Format (MathWorks, "MAT-File Format", level 5): a 128-byte header (text, subsystem offset,
version 0x0100, endian indicator "IM" little / "MI" big), then data elements, each an 8-byte
tag (type, byte count) and its data. A variable is a miMATRIX element (type 14), or a
miCOMPRESSED element (type 15) whose zlib stream inflates to one. A miMATRIX holds
sub-elements: array flags (class in the low byte, logical flag 0x0200), dimensions (int32),
name, then the data. Small sub-elements pack a 2-byte count and 2-byte type in one word.
"""

from __future__ import annotations

import os
import struct
import zlib

from .base import DataError

MI_MATRIX, MI_COMPRESSED = 14, 15
MX_CLASSES = {
    1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double", 7: "single",
    8: "int8", 9: "uint8", 10: "int16", 11: "uint16", 12: "int32", 13: "uint32",
    14: "int64", 15: "uint64",
}  # fmt: skip
HEAD_BYTES = 1024  # enough for flags, dims and a name (MATLAB names are at most 63 chars)
CHUNK = 1 << 20


def _matrix_header(raw: bytes, order: str, what: str) -> tuple[str, tuple[int, ...], str]:
    """(name, dims, class) from the first bytes of a miMATRIX element, tag included."""

    def sub(pos: int) -> tuple[bytes, int]:  # one sub-element: its data, the next position
        kind, n = struct.unpack_from(order + "II", raw, pos)
        if kind >> 16:  # small data element: count in the upper half-word, data in 4 bytes
            n = kind >> 16
            return raw[pos + 4 : pos + 4 + min(n, 4)], pos + 8
        if pos + 8 + n > len(raw):
            raise ValueError("sub-element past the header bytes")
        return raw[pos + 8 : pos + 8 + n], pos + 8 + (n + 7) // 8 * 8

    try:
        if struct.unpack_from(order + "I", raw, 0)[0] != MI_MATRIX:
            raise ValueError("not a matrix")
        flags, pos = sub(8)
        dims, pos = sub(pos)
        name, _ = sub(pos)
        word = struct.unpack_from(order + "I", flags)[0]
        shape = struct.unpack(f"{order}{len(dims) // 4}i", dims[: len(dims) // 4 * 4])
        cls = "logical" if word & 0x0200 else MX_CLASSES.get(word & 0xFF, "unknown")
        return name.decode("latin1"), tuple(shape), cls
    except (struct.error, ValueError) as e:
        raise DataError(f"{what}: a variable with an unreadable header ({e})") from None


def variables(path: str, limit: int) -> tuple[dict[str, tuple[tuple[int, ...], str]], int]:
    """({name: (dims, class)}, inflated bytes of all elements) of a MATLAB v5 file.

    Raises DataError (one line, naming the file) for a file that is not MATLAB v5 (v7.3 is
    HDF5), a truncated element, an unreadable variable header, corrupt compressed data, or
    elements that inflate to more than `limit` bytes (counted, never kept)."""
    what = os.path.basename(path)
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    total = 0
    with open(path, "rb") as f:
        head = f.read(128)
        order = {b"IM": "<", b"MI": ">"}.get(head[126:128])
        if len(head) < 128 or order is None:
            raise DataError(f"{what} is not a MATLAB v5 .mat file (no v5 header)")
        if struct.unpack(order + "H", head[124:126])[0] == 0x0200:
            raise DataError(f"{what}: MATLAB v7.3 (HDF5) files are not supported; use v5")
        while tag := f.read(8):
            kind, nbytes = struct.unpack(order + "II", tag) if len(tag) == 8 else (0, 0)
            if len(tag) < 8 or kind not in (MI_MATRIX, MI_COMPRESSED):
                raise DataError(f"{what}: truncated or corrupt .mat file (data element {kind})")
            if kind == MI_MATRIX:  # stored as is: its size is its byte count
                first = tag + f.read(min(nbytes, HEAD_BYTES))
                f.seek(8 + nbytes - len(first), os.SEEK_CUR)
                total += nbytes
            else:
                first, total = _inflate_count(f, nbytes, total, limit, what)
            if total > limit:
                raise DataError(f"{what}: data inflate to more than {limit:,} bytes; refused")
            name, dims, cls = _matrix_header(first, order, what)
            found[name] = (dims, cls)
    return found, total


def _inflate_count(f, nbytes: int, total: int, limit: int, what: str) -> tuple[bytes, int]:
    """Inflate a compressed element of `nbytes` chunk by chunk: (its first HEAD_BYTES,
    `total` plus its inflated size); stops counting once past `limit`."""
    inflate, left, first = zlib.decompressobj(), nbytes, b""
    try:
        while left > 0 and total <= limit and (chunk := f.read(min(left, CHUNK))):
            left -= len(chunk)
            while chunk and total <= limit:
                out = inflate.decompress(chunk, CHUNK)
                if len(first) < HEAD_BYTES:
                    first += out[: HEAD_BYTES - len(first)]
                total += len(out)
                chunk = inflate.unconsumed_tail
    except zlib.error as e:
        raise DataError(f"{what}: corrupt compressed data ({e})") from None
    return first, total
