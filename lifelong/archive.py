"""Runs as zip archives: download any run, and open a run uploaded from elsewhere.

An uploaded archive is untrusted. It is accepted only if every member is one of a run's own
files (manifest.json, *.safetensors, log.jsonl), directly in the archive or in one top folder;
names are plain (no "..", no absolute path, no backslash, no link, no duplicate), sizes are
capped (declared and actual), the manifest is this project's format, and the extracted run
passes open_run and loads every snapshot with its checksums and tensor shapes checked.
Nothing is ever unpickled: weights are read by safetensors alone. Every rejection is one line.
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from lifelong import runs

MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 1024 * 2**20
MAX_MEMBERS = 512
ALLOWED = re.compile(r"^(manifest\.json|log\.jsonl|[A-Za-z0-9_.-]+\.safetensors)$")


class ArchiveError(ValueError):
    """An archive that is not an acceptable run; the message says exactly why."""


def export_zip(run_dir: str | Path) -> bytes:
    """The run's own files (manifest, snapshots, stored extras, log) as a zip, in one folder
    named after the run."""
    run = runs.open_run(run_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(run.path.iterdir()):
            if p.is_file() and not p.is_symlink() and ALLOWED.match(p.name):
                z.write(p, f"{run.name}/{p.name}")
    return buf.getvalue()


def _members(z: zipfile.ZipFile) -> tuple[str, list[zipfile.ZipInfo]]:
    """(top folder or "", the file members), after checking every name, type and size."""
    infos = z.infolist()
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
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
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
        if parts[-1] in seen:
            raise ArchiveError(f"member {name!r}: duplicate file name")
        seen.add(parts[-1])
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArchiveError(f"member {name!r}: {info.file_size} bytes (at most 256 MB)")
        total += info.file_size
        files.append(info)
    if len(tops) > 1 or (tops and any(len(PurePosixPath(i.filename).parts) == 1 for i in files)):
        raise ArchiveError("archive must hold one run: its files at the top or in one folder")
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"archive unpacks to {total} bytes (at most 1 GB)")
    if "manifest.json" not in seen:
        raise ArchiveError("archive has no manifest.json (not a run)")
    return (tops.pop() if tops else ""), files


def import_zip(
    data: bytes, dest_root: str | Path, name: str | None = None, fallback_name: str = ""
) -> Path:
    """Validate an uploaded run archive and unpack it into dest_root/<name>; returns the
    path. The name defaults to the archive's top folder, else `fallback_name` (e.g. the
    uploaded file's stem). Nothing is written to dest_root unless every check passed."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArchiveError("not a zip archive") from None
    with z:
        top, files = _members(z)
        name = name or top or fallback_name or "uploaded-run"
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", name):
            raise ArchiveError(f"run name {name!r}: use letters, digits, '_', '.', '-'")
        dest = Path(dest_root) / name
        if dest.exists():
            raise ArchiveError(f"a run named {name!r} is already there")
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=_ensure(dest_root)) as tmp:
            staged = Path(tmp) / name
            staged.mkdir()
            for info in files:
                target = staged / PurePosixPath(info.filename).name
                with z.open(info) as src, open(target, "wb") as out:
                    copied = _copy_capped(src, out, info)
                if copied != info.file_size:
                    raise ArchiveError(f"member {info.filename!r}: size does not match its header")
            _check_run(staged)
            shutil.move(str(staged), dest)
    return dest


def _ensure(root) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _copy_capped(src, out, info: zipfile.ZipInfo) -> int:
    n = 0
    while chunk := src.read(1 << 20):
        n += len(chunk)
        if n > min(info.file_size, MAX_MEMBER_BYTES):  # a lying header or a zip bomb
            raise ArchiveError(f"member {info.filename!r}: unpacks to more than it declares")
        out.write(chunk)
    return n


def _check_run(path: Path) -> None:
    """open_run (format, files, sizes) and every snapshot loaded (checksums, shapes)."""
    try:
        run = runs.open_run(path)
        for k in run.snapshots:
            run.load_model(k)
        for kind, entries in run.manifest.get("extras", {}).items():
            for k in entries:
                run.extra(kind, int(k))
    except runs.RunError as exc:
        raise ArchiveError(str(exc).split(": ", 1)[-1]) from None
    listed = {s["file"] for s in run.manifest["snapshots"]} | {
        e["file"] for entries in run.manifest.get("extras", {}).values() for e in entries.values()
    }
    stray = sorted(p.name for p in path.glob("*.safetensors") if p.name not in listed)
    if stray:
        raise ArchiveError(f"{stray[0]} is not listed in manifest.json")
