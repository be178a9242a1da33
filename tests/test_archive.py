"""Run archives: a round trip, and a catalogue of bad uploads each refused with its reason."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import stat
import zipfile

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lifelong import archive, runs


def rezip(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "../../etc/passwd")
    return buf.getvalue()


@pytest.fixture(scope="module")
def good(tiny_run) -> dict[str, bytes]:
    """The tiny run's files, name -> bytes, as an archive of it would hold them."""
    data = archive.export_zip(tiny_run)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def test_round_trip(good, tiny_run, tmp_path):
    assert sorted(good) == sorted(f"tiny/{p.name}" for p in tiny_run.iterdir())
    dest = archive.import_zip(rezip(good), tmp_path / "runs")
    assert dest == tmp_path / "runs" / "tiny"
    run = runs.open_run(dest)
    original = runs.open_run(tiny_run).load_model(1).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in run.load_model(1).state_dict().items())
    # flat archives (files at the top) are fine too, under the name given
    flat = {k.split("/", 1)[1]: v for k, v in good.items()}
    assert archive.import_zip(rezip(flat), tmp_path / "runs", name="flat").name == "flat"
    with pytest.raises(archive.ArchiveError, match="already there"):
        archive.import_zip(rezip(good), tmp_path / "runs")


def _edit(good, name, data) -> dict[str, bytes]:
    return {**good, f"tiny/{name}": data}


def _manifest(good) -> dict:
    return json.loads(good["tiny/manifest.json"])


def bad_archives(good) -> dict[str, tuple[bytes, str]]:
    """label -> (archive bytes, the start of the expected message)."""
    m = _manifest(good)
    wrong_version = json.dumps({**m, "format": "lifelong-run/0"}).encode()
    snap = good["tiny/task-00.safetensors"]
    state = st_load(snap)
    key = next(k for k in state if state[k].ndim == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    reshaped = st_save(state)
    m_reshaped = json.loads(json.dumps(m))

    m_reshaped["snapshots"][0].update(
        sha256=hashlib.sha256(reshaped).hexdigest(), bytes=len(reshaped)
    )
    return {
        "pickle inside": (rezip(_edit(good, "weights.pkl", pickle.dumps({"a": 1}))), "member"),
        "pickle named safetensors": (
            rezip({**_edit(good, "task-00.safetensors", pickle.dumps({"a": 1}))}),
            "task-00.safetensors is truncated or altered",
        ),
        "zip slip": (rezip({**good, "tiny/../../evil.safetensors": b"x"}), "member"),
        "absolute path": (rezip({**good, "/etc/cron.d/x.safetensors": b"x"}), "member"),
        "symlink": (rezip(good, links=("tiny/log.jsonl.safetensors",)), "member"),
        "nested folder": (rezip({**good, "tiny/sub/x.safetensors": b"x"}), "member"),
        "two runs": (
            rezip({**good, "other/task-09.safetensors": b"x"}),
            "archive must hold one run",
        ),
        "no manifest": (
            rezip({k: v for k, v in good.items() if not k.endswith("manifest.json")}),
            "archive has no manifest.json",
        ),
        "wrong manifest version": (
            rezip(_edit(good, "manifest.json", wrong_version)),
            "unsupported format 'lifelong-run/0'",
        ),
        "truncated safetensors": (
            rezip(_edit(good, "task-01.safetensors", good["tiny/task-01.safetensors"][:500])),
            "task-01.safetensors is truncated",
        ),
        "mismatched shapes": (
            rezip(
                {
                    **_edit(good, "task-00.safetensors", reshaped),
                    "tiny/manifest.json": json.dumps(m_reshaped).encode(),
                }
            ),
            f"tensor {key} has shape",
        ),
        "stray file": (
            rezip(_edit(good, "extra.safetensors", st_save({"x": torch.zeros(1)}))),
            "extra.safetensors is not listed",
        ),
        "not a zip": (b"PK\x03\x04 this is not really a zip", "not a zip archive"),
    }


def test_every_bad_archive_is_refused_with_its_reason(good, tmp_path, monkeypatch):
    for label, (data, reason) in bad_archives(good).items():
        with pytest.raises(archive.ArchiveError) as exc:
            archive.import_zip(data, tmp_path / "runs")
        assert str(exc.value).startswith(reason) or reason in str(exc.value), (label, exc.value)
        assert "\n" not in str(exc.value), label
    # nothing was left behind by any refusal
    assert not any((tmp_path / "runs").iterdir())


def test_oversized_member_is_refused(good, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(archive.ArchiveError, match="bytes \\(at most"):
        archive.import_zip(rezip(good), tmp_path)
