"""Run archives: a round trip (with its `.uploaded` marker and evaluation data), the shipped
runs, and a catalogue of bad uploads (names, corrupt or crafted zips, bombs, garbage run
files), each refused with its reason in one line, leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import stat
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lifelong import archive, runs, zipread

ROOT = Path(__file__).resolve().parents[1]


def rezip(files: dict[str, bytes], links=(), method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "../../etc/passwd")
    return buf.getvalue()


# offsets of fields in a local header / a central directory entry
LOCAL = {"flags": (6, "H"), "method": (8, "H"), "crc": (14, "I"), "csize": (18, "I"),
         "usize": (22, "I"), "name": (30, None)}  # fmt: skip
CENTRAL = {"flags": (8, "H"), "method": (10, "H"), "crc": (16, "I"), "csize": (20, "I"),
           "usize": (24, "I")}  # fmt: skip


def patch(data: bytes, member: str, local=None, central=None) -> bytes:
    """The archive with fields of `member`'s local header and central entry replaced."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        h = z.getinfo(member).header_offset
    c = next(
        i
        for i in range(len(out))
        if out[i : i + 4] == b"PK\x01\x02" and out[i + 46 : i + 46 + len(member)] == member.encode()
    )
    for base, table, fields in ((h, LOCAL, local or {}), (c, CENTRAL, central or {})):
        for field, value in fields.items():
            at, fmt = table[field]
            if fmt is None:
                out[base + at : base + at + len(value)] = value
            else:
                struct.pack_into("<" + fmt, out, base + at, value)
    return bytes(out)


def data_offset(data: bytes, member: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        h = z.getinfo(member).header_offset
    n, x = struct.unpack_from("<HH", data, h + 26)
    return h + 30 + n + x


@pytest.fixture(scope="module")
def good(tiny_run) -> dict[str, bytes]:
    """The tiny run's files, name -> bytes, as an archive of it would hold them."""
    data = archive.export_zip(tiny_run)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def test_round_trip_marks_the_upload(good, tiny_run, tmp_path):
    assert sorted(good) == sorted(f"tiny/{p.name}" for p in tiny_run.iterdir())
    dest = archive.import_zip(rezip(good), tmp_path / "runs", source="tiny.zip")
    assert dest == tmp_path / "runs" / "tiny"
    run = runs.open_run(dest)
    original = runs.open_run(tiny_run).load_model(1).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in run.load_model(1).state_dict().items())
    marker = json.loads((dest / archive.MARKER).read_text())
    assert marker["from"] == "tiny.zip" and marker["uploaded"][:2] == "20"
    # the marker stays behind when the run is exported again
    with zipfile.ZipFile(io.BytesIO(archive.export_zip(dest))) as z:
        assert sorted(z.namelist()) == sorted(good)
    # flat archives (files at the top) are fine too, under the name given or a safe fallback
    flat = rezip({k.split("/", 1)[1]: v for k, v in good.items()})
    assert archive.import_zip(flat, tmp_path / "runs", name="flat").name == "flat"
    assert (
        archive.import_zip(flat, tmp_path / "runs", fallback_name="my run (1)").name == "my-run-1"
    )
    with pytest.raises(archive.ArchiveError, match="already there"):
        archive.import_zip(rezip(good), tmp_path / "runs")
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".upload")]


class Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors (flag bit 3, zero sizes in
    the local headers), as macOS's Finder and streaming zippers do."""

    def __init__(self):
        self.buf = io.BytesIO()

    def writable(self):
        return True

    def write(self, b):
        return self.buf.write(b)


def test_streamed_zips_and_finder_litter_are_fine(good, tmp_path):
    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in {
            **good,
            "__MACOSX/tiny/._log.jsonl": b"\0",
            "tiny/.DS_Store": b"x",
        }.items():
            with z.open(name, "w") as fh:
                fh.write(data)
    data = out.buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert all(i.flag_bits & 0x08 for i in z.infolist())
    dest = archive.import_zip(data, tmp_path)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [archive.MARKER, *(k.split("/")[1] for k in good)]
    )


def test_evaldata_travels_and_unlisted_safetensors_are_refused(good, tmp_path):
    evaldata = _manifest(good)["evaldata"]  # the trainer stores each task's test sample
    assert sorted(f"tiny/{e['file']}" for e in evaldata.values()) == [
        "tiny/evaldata-00.safetensors",
        "tiny/evaldata-01.safetensors",
    ]
    dest = archive.import_zip(rezip(good), tmp_path / "runs")
    (dest / "stray.safetensors").write_bytes(st_save({"x": torch.zeros(1)}))  # not listed
    with zipfile.ZipFile(io.BytesIO(archive.export_zip(dest))) as z:
        assert sorted(z.namelist()) == sorted(good)  # evaldata in; marker, stray out
    evil = st_save({"x": torch.ones(3)})
    for extra in ({"tiny/evaldata-07.safetensors": evil}, {"tiny/map-09.safetensors": evil}):
        with pytest.raises(archive.ArchiveError, match="not listed in manifest.json"):
            archive.import_zip(rezip({**good, **extra}), tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_shipped_runs_survive_a_round_trip(tmp_path):
    shipped = [p for p in sorted((ROOT / "pretrained").iterdir()) if p.is_dir()]
    assert shipped
    for run in shipped:
        dest = archive.import_zip(archive.export_zip(run), tmp_path)
        assert (dest / archive.MARKER).is_file() and runs.open_run(dest).snapshots


def _edit(good, name, data) -> dict[str, bytes]:
    return {**good, f"tiny/{name}": data}


def _manifest(good) -> dict:
    return json.loads(good["tiny/manifest.json"])


def _relisted(good, name: str, data: bytes) -> dict[str, bytes]:
    """`name` replaced by `data`, its manifest entry updated to match (checksum, size)."""
    m = _manifest(good)
    groups = [*m.get("extras", {}).values(), m.get("evaldata", {})]
    for e in [*m["snapshots"], *[e for v in groups for e in v.values()]]:
        if e["file"] == name:
            e.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    return {**_edit(good, name, data), "tiny/manifest.json": json.dumps(m).encode()}


def bad_archives(good) -> dict[str, tuple[bytes, str]]:
    """label -> (archive bytes, the start of the expected message)."""
    m = _manifest(good)
    snap = good["tiny/task-00.safetensors"]
    state = st_load(snap)
    key = next(k for k in state if state[k].ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    big = {**m, "config": {**m["config"], "hidden": 150000}}
    return {
        "pickle inside": (rezip(_edit(good, "weights.pkl", pickle.dumps({"a": 1}))), "member"),
        "pickle named safetensors": (
            rezip(_edit(good, "task-00.safetensors", pickle.dumps({"a": 1}))),
            "task-00.safetensors is truncated or altered",
        ),
        "zip slip": (rezip({**good, "tiny/../../evil.safetensors": b"x"}), "member"),
        "absolute path": (rezip({**good, "/etc/cron.d/x.safetensors": b"x"}), "member"),
        "symlink": (rezip(good, links=("tiny/log.jsonl.safetensors",)), "member"),
        "nested folder": (rezip({**good, "tiny/sub/x.safetensors": b"x"}), "member"),
        "two runs": (rezip({**good, "other/task-09.safetensors": b"x"}), "must hold one run"),
        "no manifest": (
            rezip({k: v for k, v in good.items() if not k.endswith("manifest.json")}),
            "archive has no manifest.json",
        ),
        "wrong manifest version": (
            rezip(_edit(good, "manifest.json", json.dumps({**m, "format": "x/0"}).encode())),
            "unsupported format 'x/0'",
        ),
        "truncated safetensors": (
            rezip(_edit(good, "task-01.safetensors", good["tiny/task-01.safetensors"][:500])),
            "task-01.safetensors is truncated",
        ),
        "altered safetensors": (
            rezip(_edit(good, "task-00.safetensors", b"\0" + snap[1:])),
            "task-00.safetensors does not match its sha256 in manifest.json",
        ),
        "mismatched shapes": (rezip(_relisted(good, "task-00.safetensors", st_save(state))), key),
        "config bomb (hidden=150000)": (
            rezip(_edit(good, "manifest.json", json.dumps(big).encode())),
            "has shape",
        ),
        "stray file": (
            rezip(_edit(good, "extra.safetensors", st_save({"x": torch.zeros(1)}))),
            "extra.safetensors is not listed",
        ),
        "listed file absent": (
            rezip({k: v for k, v in good.items() if not k.endswith("task-01.safetensors")}),
            "task-01.safetensors is listed in manifest.json but not in the archive",
        ),
        "garbage manifest": (
            rezip(_edit(good, "manifest.json", b"\x89PNG\r\n")),
            "manifest.json is not valid JSON",
        ),
        "deep manifest": (
            rezip(_edit(good, "manifest.json", b"[" * 100000)),
            "manifest.json is not valid JSON",
        ),
        "manifest entry a string": (
            rezip(_edit(good, "manifest.json", json.dumps({**m, "snapshots": ["x"]}).encode())),
            "snapshot entry 0 is not an object",
        ),
        "garbage log": (rezip(_edit(good, "log.jsonl", b"\xff\xfe\x00garbage")), "not UTF-8"),
        "log of lists": (
            rezip(_edit(good, "log.jsonl", b'{"a": 1}\n[1, 2]\n')),
            "log.jsonl line 2 is not a JSON object",
        ),
        "garbage named safetensors, checksum matching": (
            rezip(_relisted(good, "task-00.safetensors", b"\xff" * 64)),
            "task-00.safetensors is not a valid safetensors file",
        ),
        "garbage evaldata, checksum matching": (
            rezip(_relisted(good, "evaldata-00.safetensors", b"x" * 9)),
            "evaldata-00.safetensors is not a valid safetensors file",
        ),
        "evaldata of the wrong type, checksum matching": (
            rezip(_relisted(good, "evaldata-01.safetensors", st_save({"x": torch.zeros(2)}))),
            "evaluation data of task 1 is malformed",
        ),
        "duplicate names differing in case": (
            rezip({**good, "tiny/TASK-00.safetensors": snap}),
            "duplicate file name",
        ),
        "unsupported compression": (rezip(good, method=zipfile.ZIP_BZIP2), "compression method 12"),
        "not a zip": (b"MZ\x90\x00 an executable", "not a zip archive"),
        "truncated archive": (rezip(good)[:-300], "not a zip archive: truncated"),
    }


def crafted_zips(good) -> dict[str, tuple[bytes, str]]:
    """Byte-patched archives: corrupt data and headers that lie."""
    z = rezip(good)
    stored = rezip(good, method=zipfile.ZIP_STORED)
    log, snap = "tiny/log.jsonl", "tiny/task-00.safetensors"
    with zipfile.ZipFile(io.BytesIO(z)) as zf:
        size = zf.getinfo(log).file_size
    at = data_offset(stored, snap) + 1000
    flipped = stored[:at] + bytes([stored[at] ^ 0x20]) + stored[at + 1 :]
    at = data_offset(z, snap)
    bad_block = z[:at] + b"\x07" + z[at + 1 :]  # BFINAL=1, BTYPE=11: reserved, invalid
    small, large = {"usize": size // 2}, {"usize": size * 2}
    return {
        "bad CRC": (flipped, f"member {snap!r}: bad CRC-32"),
        "corrupt deflate data": (bad_block, "corrupt compressed data"),
        "local header understates": (patch(z, log, local=small), "local header says size"),
        "local header overstates": (patch(z, log, local=large), "local header says size"),
        "both headers understate": (patch(z, log, small, small), "unpacks to more than the"),
        "both headers overstate": (patch(z, log, large, large), "its header declares"),
        "central CRC disagrees": (patch(z, log, central={"crc": 1}), "says CRC-32"),
        "central name disagrees": (patch(z, log, local={"name": b"TINY"}), "local header names"),
        "central method disagrees": (patch(z, log, central={"method": 0}), "disagree on its"),
        "encrypted member": (patch(z, log, {"flags": 1}, {"flags": 1}), "encrypted"),
        "data past the end": (patch(z, snap, {"csize": 10**8}, {"csize": 10**8}), "runs past"),
    }


def refused(data: bytes, root: Path, reason: str, label: str = "") -> str:
    with pytest.raises(archive.ArchiveError) as exc:
        archive.import_zip(data, root)
    msg = str(exc.value)
    assert msg.startswith(reason) or reason in msg, (label, msg)
    assert "\n" not in msg, label
    assert not root.exists() or not any(root.iterdir()), label  # nothing left behind
    return msg


def test_every_bad_archive_is_refused_with_its_reason(good, tmp_path):
    for label, (data, reason) in {**bad_archives(good), **crafted_zips(good)}.items():
        refused(data, tmp_path / "runs", reason, label)
        refused(data, tmp_path / "runs", reason, label)  # a root that exists already, too
        (tmp_path / "runs").mkdir(exist_ok=True)


def test_zip_bombs_are_refused_before_anything_is_inflated(good, tmp_path, monkeypatch):
    bomb = rezip(_edit(good, "log.jsonl", b"\n" * (40 * 2**20)))  # honest headers, ~500x
    msg = refused(bomb, tmp_path / "runs", "archive unpacks to 4")
    assert "(at most 33,554,432" in msg
    monkeypatch.setattr(zipread, "inflate", None)  # the refusal came before any inflating
    refused(bomb, tmp_path / "runs", "archive unpacks to")
    monkeypatch.setattr(zipread, "MAX_MEMBER_BYTES", 1000)
    refused(rezip(good), tmp_path / "runs", "bytes (at most")


def test_bombs_within_the_budget_write_nothing(good, tmp_path, monkeypatch):
    """A lying header and a config naming a huge network are refused while verifying, before
    the destination is even created (so nothing is written) and before any model is built."""
    monkeypatch.setattr(archive, "_ensure", None)
    real_build = archive.models.build

    def meta_only(*args, **kw):
        assert torch.get_default_device().type == "meta", "a model was built for real"
        return real_build(*args, **kw)

    monkeypatch.setattr(archive.models, "build", meta_only)
    lying = rezip(_edit(good, "log.jsonl", b"\n" * (4 * 2**20)))
    lying = patch(lying, "tiny/log.jsonl", {"usize": 100}, {"usize": 100})
    refused(lying, tmp_path / "runs", "unpacks to more than the 100 bytes")
    m = _manifest(good)
    big = json.dumps({**m, "config": {**m["config"], "hidden": 150000}}).encode()
    msg = refused(rezip(_edit(good, "manifest.json", big)), tmp_path / "runs", "has shape")
    assert "config implies (150000," in msg


def test_many_members_and_a_huge_directory_are_refused(good, tmp_path):
    many = rezip({**good, **{f"tiny/x{i}.safetensors": b"" for i in range(600)}})
    refused(many, tmp_path / "runs", "archive has more than 512 members")
    long = rezip({f"tiny/{'a' * 60000}{i}.safetensors": b"" for i in range(10)})
    refused(long, tmp_path / "runs", "archive's directory is")


def test_an_unwritable_destination_says_so(good, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(archive.ArchiveError, match="cannot create the runs folder"):
        archive.import_zip(rezip(good), tmp_path / "file" / "runs")
    assert (tmp_path / "file").read_text() == "not a folder"
