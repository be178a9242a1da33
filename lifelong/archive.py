"""Runs as zip archives: download any run, and open a run uploaded from elsewhere.

An upload is untrusted; it is accepted only if every member is one of a run's own files
(manifest.json, log.jsonl, the *.safetensors its manifest lists), at the top or in one folder.
zipfile only parses the central directory; members are read here: each local header must
agree with the directory, members may not overlap, only stored or deflated data, inflating
capped at the declared size. Declared sizes must fit `budget` (tied to the archive's own size)
before anything is inflated; then every member is inflated in bounded chunks and checked
(manifest format, each file's listed size and sha256, log.jsonl lines) before anything is
written, so a refused archive costs no disk and a few MB of memory. Only then is the run
unpacked into a temporary folder beside the destination, opened and loaded like any run
(shapes checked before a model is built), marked `.uploaded` and renamed into place. Nothing
is unpickled; every refusal is one line and leaves nothing behind.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import itertools
import json
import os
import re
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from lifelong import evaldata, models, runcheck, runs

MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 1024 * 2**20
MAX_MEMBERS = 512
MAX_CENTRAL_BYTES = MAX_MEMBERS * 1024  # zipfile holds every entry in memory: bound them
MAX_MANIFEST_BYTES = 4 * 2**20  # parsed in memory; real manifests are 10-100 kB
MAX_LOG_LINE = 64 * 2**10  # one log record; real ones are a few hundred bytes
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
MARKER = ".uploaded"  # written into every imported run; dot-files are never exported
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


def listed_files(manifest: dict) -> dict[str, dict]:
    """File name -> manifest entry ({"file", "sha256", "bytes", ...}) of every file a
    (runcheck-checked) manifest names: snapshots, stored extras, evaluation data."""
    extras = [e for kind in manifest.get("extras", {}).values() for e in kind.values()]
    entries = [*manifest["snapshots"], *extras, *manifest.get("evaldata", {}).values()]
    return {e["file"]: e for e in entries}


def export_zip(run_dir: str | Path) -> bytes:
    """The run's own files (manifest, log and every file the manifest lists: snapshots,
    stored extras, evaluation data) as a zip, in one folder named after the run. Unlisted
    files and dot-files (checkpoints, the `.uploaded` marker) stay behind."""
    run = runs.open_run(run_dir)
    names = {"manifest.json", "log.jsonl", *listed_files(run.manifest)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n in sorted(names):
            p = run.path / n
            if ALLOWED.match(n) and p.is_file() and not p.is_symlink():
                z.write(p, f"{run.name}/{n}")
    return buf.getvalue()


def import_zip(
    data: bytes,
    dest_root: str | Path,
    name: str | None = None,
    fallback_name: str = "",
    source: str | None = None,
) -> Path:
    """Validate an uploaded run archive and unpack it into dest_root/<name>; returns the
    path. The name defaults to the archive's top folder, else `fallback_name` (e.g. the
    uploaded file's stem, made safe). `source` (the uploaded file's name, default
    `fallback_name`) is recorded in the run's `.uploaded` marker. Nothing is written to
    dest_root unless every check passed; any refusal is an ArchiveError of one line."""
    data = bytes(data)
    top, files, spans = _members(data)
    fallback = re.sub(r"[^A-Za-z0-9_.-]+", "-", fallback_name).strip("-_.")[:100]
    name = name or top or fallback or "uploaded-run"
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", name):
        raise ArchiveError(f"run name {name!r}: use letters, digits, '_', '.', '-'")
    dest = Path(dest_root) / name
    if dest.exists():
        raise ArchiveError(f"a run named {name!r} is already there")
    _verify(data, files, spans)  # every member inflated and checked; nothing written yet
    created = _ensure(Path(dest_root))
    try:
        with tempfile.TemporaryDirectory(
            prefix=".upload-", dir=dest_root, ignore_cleanup_errors=True
        ) as tmp:
            staged = Path(tmp) / name
            staged.mkdir()
            for info in files:
                with open(staged / PurePosixPath(info.filename).name, "xb") as out:
                    for chunk in _inflate(data, info, spans[info.filename]):
                        out.write(chunk)
            _check_run(staged)
            marker = {"uploaded": datetime.now(UTC).isoformat(timespec="seconds")}
            marker["from"] = source if source is not None else (fallback_name or name)
            (staged / MARKER).write_text(json.dumps(marker))
            try:
                os.rename(staged, dest)
            except OSError:
                raise ArchiveError(f"a run named {name!r} is already there") from None
    except OSError as exc:
        _remove_created(created)
        raise ArchiveError(f"could not unpack the run: {exc.strerror or exc}") from None
    except BaseException:
        _remove_created(created)
        raise
    return dest


def _members(data: bytes) -> tuple[str, list[zipfile.ZipInfo], dict[str, tuple[int, int]]]:
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
        raise ArchiveError(f"not a readable zip archive ({_line(exc)})") from None
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
    spans = {i.filename: _span(data, i) for i in files}
    ordered = sorted((i.header_offset, spans[i.filename][1], i.filename) for i in files)
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(ordered):
        if start_b < end_a:
            raise ArchiveError(f"members {a!r} and {b!r} overlap (a crafted archive)")
    return (tops.pop() if tops else ""), files, spans


def _span(data: bytes, info: zipfile.ZipInfo) -> tuple[int, int]:
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


def _inflate(data: bytes, info: zipfile.ZipInfo, span: tuple[int, int]) -> Iterator[bytes]:
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


def _verify(data: bytes, files: list[zipfile.ZipInfo], spans: dict) -> None:
    """Inflate every member (chunk by chunk, nothing kept, nothing written) and check it: the
    manifest parses and is this format, each safetensors file is listed there with this size
    and sha256, and every listed file is present; log.jsonl holds JSON objects."""
    by_name = {PurePosixPath(i.filename).name: i for i in files}
    info = by_name["manifest.json"]
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(
            f"manifest.json is {info.file_size:,} bytes (at most {MAX_MANIFEST_BYTES:,})"
        )
    raw = b"".join(_inflate(data, info, spans[info.filename]))
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise ArchiveError("manifest.json is not valid JSON") from None
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    if found != runs.FORMAT:
        raise ArchiveError(f"unsupported format {str(found)[:40]!r} (expected {runs.FORMAT})")
    try:
        runcheck.check_manifest(manifest, models.REGISTRY)
    except runcheck.ManifestError as exc:
        raise ArchiveError(str(exc)) from None
    listed, shapes = listed_files(manifest), {}
    absent = sorted(set(listed) - set(by_name))
    if absent:
        raise ArchiveError(f"{absent[0]} is listed in manifest.json but not in the archive")
    for f, info in sorted(by_name.items()):
        chunks = _inflate(data, info, spans[info.filename])
        if f == "log.jsonl":
            _check_log(chunks)
        elif f != "manifest.json":
            entry = listed.get(f)
            if entry is None:
                raise ArchiveError(f"{f} is not listed in manifest.json")
            if entry.get("bytes", info.file_size) != info.file_size:
                raise ArchiveError(
                    f"{f} is truncated or altered ({info.file_size} of {entry['bytes']} bytes)"
                )
            digest, head = hashlib.sha256(), bytearray()
            for chunk in chunks:
                digest.update(chunk)
                head += chunk[: CHUNK - len(head)]  # the safetensors header, for its shapes
            if digest.hexdigest() != entry["sha256"]:
                raise ArchiveError(f"{f} does not match its sha256 in manifest.json")
            shapes[f] = _header_shapes(f, bytes(head))
    _check_config(manifest, shapes)


def _header_shapes(f: str, head: bytes) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (its first CHUNK bytes)."""
    n = int.from_bytes(head[:8], "little")
    try:
        if len(head) < 8 or 8 + n > len(head):
            raise ValueError("header missing or over 1 MB")
        header = json.loads(head[8 : 8 + n])
        return {
            k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise ArchiveError(f"{f} is not a valid safetensors file ({_line(exc)})") from None


def _check_config(manifest: dict, shapes: dict[str, dict]) -> None:
    """Every snapshot's tensors (from the headers, aliases followed) have the names and shapes
    its config implies, found on the meta device: a config naming a huge network
    (hidden=150000) is refused before anything is written or allocated."""
    family, state = manifest["family"], {}
    try:
        config = models.config_from_dict(models.family(family)[1], manifest["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ArchiveError(f"config does not fit {family}: {_line(exc)}") from None
    for entry in manifest["snapshots"]:  # in task order (runcheck)
        k, previous = entry["after_task"], dict(state)
        state.update(shapes[entry["file"]])
        for name, source in entry.get("aliases", {}).items():
            state[name] = previous.get(source)  # a missing source: load_model names it
        try:
            expected = models.state_shapes(family, config, entry.get("arch"))
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as exc:
            raise ArchiveError(f"cannot build {family}: {_line(exc)}") from None
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise ArchiveError(f"snapshot after task {k} does not match its config: {what}")
        for name, shape in expected.items():
            if state[name] is not None and state[name] != shape:
                raise ArchiveError(f"tensor {name} has shape {state[name]}, config implies {shape}")


def _check_log(chunks: Iterator[bytes]) -> None:
    """log.jsonl is UTF-8, one JSON object per line; an unterminated last line (a record cut
    by a crash, which readers skip) is allowed."""
    decoder, pending, n = codecs.getincrementaldecoder("utf-8")(), "", 0
    try:
        for chunk in chunks:
            *lines, pending = (pending + decoder.decode(bytes(chunk))).split("\n")
            for line in lines:
                n += 1
                if line.strip():
                    try:
                        record = json.loads(line) if len(line) <= MAX_LOG_LINE else None
                    except (ValueError, RecursionError):
                        record = None
                    if not isinstance(record, dict):
                        raise ArchiveError(f"log.jsonl line {n} is not a JSON object")
            if len(pending) > MAX_LOG_LINE:
                raise ArchiveError(f"log.jsonl line {n + 1} is longer than {MAX_LOG_LINE:,} bytes")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ArchiveError("log.jsonl is not UTF-8 text") from None


def _check_run(path: Path) -> None:
    """open_run (format, confinement, sizes), every snapshot loaded (checksums; shapes from
    the config on the meta device before a model is built), every stored extra and
    evaluation sample read and checked, and no unlisted *.safetensors."""
    try:
        run = runs.open_run(path)
        for k in run.snapshots:
            run.load_model(k)
        for kind, entries in run.manifest.get("extras", {}).items():
            for k in entries:
                run.extra(kind, int(k))
        for k in run.manifest.get("evaldata", {}):
            evaldata.stored(run, int(k))
        listed = listed_files(run.manifest)
    except runs.RunError as exc:
        raise ArchiveError(_line(exc).split(": ", 1)[-1]) from None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, StopIteration) as exc:
        raise ArchiveError(
            f"manifest.json is malformed ({type(exc).__name__}: {_line(exc)})"
        ) from None
    stray = sorted(p.name for p in path.glob("*.safetensors") if p.name not in listed)
    if stray:
        raise ArchiveError(f"{stray[0]} is not listed in manifest.json")


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _ensure(root: Path) -> list[Path]:
    """Create root (and missing parents); the folders created, deepest first."""
    created = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the runs folder ({exc.strerror or exc})") from None
    if not root.is_dir():
        raise ArchiveError("the runs folder is not a folder")
    return created


def _remove_created(created: list[Path]) -> None:
    """Remove the folders _ensure created, if still empty (a refusal leaves nothing)."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return
