"""Reading an untrusted zip archive (archive.py's uploads) without trusting it.

zipfile only parses the central directory here; members are read by this module: each local
header must agree with the directory, members may not overlap, only stored or deflated data,
and inflating is capped at the declared size, in chunks of at most CHUNK bytes (a member is
never held whole). Declared sizes must fit `budget` (tied to the archive's own size) before
anything is inflated. Every refusal is an ArchiveError of one line.
"""

from __future__ import annotations

import io
import itertools
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath

MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 1024 * 2**20
MAX_MEMBERS = 512
MAX_CENTRAL_BYTES = MAX_MEMBERS * 1024  # zipfile holds every entry in memory: bound them
# Budget for what an archive may unpack to: RATIO times its own size, at least FLOOR_BYTES.
# Trained weights barely compress (snapshots deflate 1.08-1.35x), JSON and logs 3-5x, stored
# projections ~4x, evaluation images 1.1-8.4x (uint8; the shapes task is mostly background):
# the shipped runs unpack to 1.1-2.0x their zip. The images are small (<= 0.5 MB a task), so
# the floor covers tiny runs where they dominate. 8x leaves room for all of that, while a
# zip bomb (deflate reaches ~1000x; the 5.7 MB zip that unpacked to 1 GB is 175x) is refused
# before a byte is inflated; within the budget a bomb still writes nothing (verified first).
RATIO = 8
FLOOR_BYTES = 32 * 2**20
CHUNK = 1 << 20
ALLOWED = re.compile(r"^(manifest\.json|log\.jsonl|[A-Za-z0-9_.-]+\.safetensors)$")
# what zipfile raises on a crafted central directory (NotImplementedError: "zip file version")
ZIP_ERRORS = (zipfile.BadZipFile, ValueError, EOFError, struct.error, OverflowError)
ZIP_ERRORS += (NotImplementedError, IndexError, KeyError)
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip's local file header, 30 bytes


class ArchiveError(ValueError):
    """An archive that is not an acceptable run; the message says exactly why."""


def budget(archive_bytes: int) -> int:
    """The most bytes an archive of `archive_bytes` may unpack to (see RATIO)."""
    return min(MAX_TOTAL_BYTES, max(FLOOR_BYTES, RATIO * archive_bytes))


def members(data: bytes) -> tuple[str, list[zipfile.ZipInfo], dict[str, tuple[int, int]]]:
    """(top folder or "", the file members, name -> (start, end) of each one's compressed
    data), after checking every name, type, size, header and the budget; nothing inflated."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if end < 0 or end + 22 > len(data):
        if data.startswith(b"PK\x03\x04"):
            raise ArchiveError("not a zip archive: truncated (its end record is missing)")
        raise ArchiveError("not a zip archive")
    n_entries, cd_size = struct.unpack_from("<HI", data, end + 10)
    if n_entries > MAX_MEMBERS or data[max(0, end - 20) : end - 16] == b"PK\x06\x07":
        raise ArchiveError(f"archive has more than {MAX_MEMBERS} members (or is zip64)")
    if cd_size > MAX_CENTRAL_BYTES:
        raise ArchiveError(
            f"archive's directory is {cd_size:,} bytes (at most {MAX_CENTRAL_BYTES:,})"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except ZIP_ERRORS as exc:
        raise ArchiveError(f"not a readable zip archive ({line(exc)})") from None
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"archive has {len(infos)} members (at most {MAX_MEMBERS})")
    files, tops, seen, total = [], set(), set(), 0
    for info in infos:
        name = info.filename
        if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise ArchiveError(f"member {name!r}: absolute or non-POSIX path")
        parts = PurePosixPath(name).parts
        if any(p in ("..", ".") for p in parts):
            raise ArchiveError(f"member {name!r}: path escapes the run folder")
        if parts and (parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"):
            continue  # what macOS's Finder adds to a zip: never unpacked
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"member {name!r}: links are not accepted")
        if info.is_dir():
            if len(parts) > 1:
                raise ArchiveError(f"member {name!r}: nested folders are not part of a run")
            tops.add(parts[0])
            continue
        if len(parts) > 2:
            raise ArchiveError(f"member {name!r}: nested folders are not part of a run")
        if len(parts) == 2:
            tops.add(parts[0])
        if not ALLOWED.match(parts[-1]):
            raise ArchiveError(
                f"member {name!r}: only manifest.json, *.safetensors and log.jsonl are accepted"
            )
        if parts[-1].casefold() in seen:  # case too: they would clash on macOS or Windows
            raise ArchiveError(f"member {name!r}: duplicate file name")
        seen.add(parts[-1].casefold())
        if info.flag_bits & 0x1:
            raise ArchiveError(f"member {name!r}: encrypted members are not accepted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(
                f"member {name!r}: compression method {info.compress_type} is not supported"
                " (stored or deflated only)"
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArchiveError(
                f"member {name!r}: {info.file_size:,} bytes (at most {MAX_MEMBER_BYTES:,})"
            )
        total += info.file_size
        files.append(info)
    if len(tops) > 1 or (tops and any(len(PurePosixPath(i.filename).parts) == 1 for i in files)):
        raise ArchiveError("archive must hold one run: its files at the top or in one folder")
    if total > budget(len(data)):
        raise ArchiveError(
            f"archive unpacks to {total:,} bytes, {total / max(1, len(data)):.0f}x its own"
            f" {len(data):,} (at most {budget(len(data)):,}: runs barely compress)"
        )
    if "manifest.json" not in seen:
        raise ArchiveError("archive has no manifest.json (not a run)")
    spans = {i.filename: span(data, i) for i in files}
    ordered = sorted((i.header_offset, spans[i.filename][1], i.filename) for i in files)
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(ordered):
        if start_b < end_a:
            raise ArchiveError(f"members {a!r} and {b!r} overlap (a crafted archive)")
    return (tops.pop() if tops else ""), files, spans


def span(data: bytes, info: zipfile.ZipInfo) -> tuple[int, int]:
    """Where the member's compressed data lies, after checking its local header against the
    central directory (zipfile alone trusts the directory, other unzippers the headers)."""
    name, h = info.filename, info.header_offset
    if h < 0 or h + LOCAL_HEADER.size > len(data):
        raise ArchiveError(f"member {name!r}: its local header is missing (truncated archive)")
    sig, _, _, flags, method, _, _, crc, csize, usize, n, x = LOCAL_HEADER.unpack_from(data, h)
    if sig != b"PK\x03\x04":
        raise ArchiveError(f"member {name!r}: no local header where the directory points")
    try:
        local = data[h + 30 : h + 30 + n].decode("utf-8" if flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        local = None
    if local != info.orig_filename:
        raise ArchiveError(f"member {name!r}: its local header names {local!r}")
    if method != info.compress_type or flags & 0x1 != info.flag_bits & 0x1:
        raise ArchiveError(f"member {name!r}: local header and directory disagree on its method")
    for what, mine, central, fmt in (
        ("CRC-32", crc, info.CRC, "#010x"),
        ("compressed size", csize, info.compress_size, ","),
        ("size", usize, info.file_size, ","),
    ):
        deferred = (flags & 0x8 and mine == 0) or mine == 0xFFFFFFFF  # data descriptor, zip64
        if mine != central and not deferred:
            raise ArchiveError(
                f"member {name!r}: local header says {what} {mine:{fmt}}, directory {central:{fmt}}"
            )
    start = h + 30 + n + x
    if start + info.compress_size > len(data):
        raise ArchiveError(f"member {name!r}: its data runs past the end (truncated archive)")
    return start, start + info.compress_size


def inflate(data: bytes, info: zipfile.ZipInfo, span: tuple[int, int]) -> Iterator[bytes]:
    """The member's bytes in chunks of at most CHUNK, never more than it declares, its CRC
    checked at the end; ArchiveError on corrupt, short or overlong data."""
    (start, end), name, left, crc = span, info.filename, info.file_size, 0
    view = memoryview(data)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise ArchiveError(f"member {name!r}: stored, but its two sizes differ")
        for pos in range(start, end, CHUNK):
            out = view[pos : min(end, pos + CHUNK)]
            crc = zlib.crc32(out, crc)
            yield out
        left = 0
    else:
        d, pos = zlib.decompressobj(-15), start
        try:
            while not d.eof:
                buf = d.unconsumed_tail
                if not buf and pos < end:
                    buf = view[pos : min(end, pos + CHUNK)]
                    pos += len(buf)
                out = d.decompress(buf, min(CHUNK, left + 1))  # one byte past: overflow seen
                if len(out) > left:
                    raise ArchiveError(
                        f"member {name!r}: unpacks to more than the {info.file_size:,} bytes"
                        " its header declares"
                    )
                if not out and not buf:
                    break
                left -= len(out)
                crc = zlib.crc32(out, crc)
                if out:
                    yield out
        except zlib.error as exc:
            raise ArchiveError(f"member {name!r}: corrupt compressed data ({exc})") from None
        if not d.eof:
            raise ArchiveError(f"member {name!r}: compressed data ends early (truncated)")
        if d.unused_data or pos < end:
            raise ArchiveError(f"member {name!r}: compressed data ends before its stated size")
    if left:
        raise ArchiveError(
            f"member {name!r}: unpacks to {info.file_size - left:,} bytes,"
            f" its header declares {info.file_size:,}"
        )
    if crc != info.CRC:
        raise ArchiveError(f"member {name!r}: bad CRC-32 (the data is corrupt)")


def line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
