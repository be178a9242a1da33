"""IDX reader and the file-backed datasets (mnist, fashion, kmnist) on tiny files written
here; Fashion-MNIST's Debian default folder when installed."""

import dataclasses
import gzip
import os
import struct

import numpy as np
import pytest
import torch

from lifelong.data import DataError, load_task, parse_tasks, registry
from lifelong.data import idx as idxmod


def idx_bytes(a: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.uint8).tobytes()


def write(path, a, gz=False):
    data = idx_bytes(a)
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_dir(root, n_train=6, n_test=4, gz=False, dot=False, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        sep = "." if dot else "-"
        ext = ".gz" if gz else ""
        write(root / f"{prefix}-images{sep}idx3-ubyte{ext}", x, gz)
        write(root / f"{prefix}-labels{sep}idx1-ubyte{ext}", y, gz)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dot", [False, True])
def test_reads_idx_dirs(tmp_path, gz, dot):
    ref = make_dir(tmp_path, gz=gz, dot=dot)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        t = load_task(f"mnist:path={tmp_path}", split)
        x, y = ref[prefix]
        assert t.x.shape == (len(y), 1, 28, 28) and t.x.dtype == torch.float32
        assert torch.allclose(t.x[:, 0] * 255, torch.from_numpy(x).float())
        assert torch.equal(t.y, torch.from_numpy(y).long())
        assert t.classes == [str(i) for i in range(10)]
        assert t.name == f"mnist:path={tmp_path}"


def test_read_idx_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(idxmod.read_idx(str(write(tmp_path / "a", a))), a)
    assert np.array_equal(idxmod.read_idx(str(write(tmp_path / "b.gz", a, gz=True))), a)


def test_kmnist_and_fashion_names_and_transforms(tmp_path):
    make_dir(tmp_path)
    k = load_task(f"kmnist:path={tmp_path}:classes=0-4:invert", "test")
    assert k.classes == ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
    assert set(k.y.tolist()) <= set(range(5))
    f = load_task(f"fashion:path={tmp_path}", "test")
    assert f.classes[0] == "T-shirt/top" and f.classes[9] == "Ankle boot"


def test_bad_magic_names_file(tmp_path):
    make_dir(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*bad magic number 12345678"):
        load_task(f"mnist:path={tmp_path}")


def test_bad_files(tmp_path):
    a = np.zeros((3, 28, 28), np.uint8)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(idx_bytes(a)[:-5])
    with pytest.raises(DataError, match="trunc: header says"):
        idxmod.read_idx(str(trunc))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty is not an IDX file"):
        idxmod.read_idx(str(empty))
    # labels and images disagree in count
    d = tmp_path / "mismatch"
    d.mkdir()
    make_dir(d)
    write(d / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="3 labels but"):
        load_task(f"mnist:path={d}", "test")
    # label out of range
    d = tmp_path / "labels"
    d.mkdir()
    make_dir(d)
    write(d / "t10k-labels-idx1-ubyte", np.full(4, 12, np.uint8))
    with pytest.raises(DataError, match="labels must be in 0..9"):
        load_task(f"mnist:path={d}", "test")
    # images not 28x28
    d = tmp_path / "small"
    d.mkdir()
    make_dir(d)
    write(d / "t10k-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match="28x28"):
        load_task(f"mnist:path={d}", "test")


def test_missing_dir_and_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_task(f"mnist:path={tmp_path / 'nope'}")
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_task(f"mnist:path={tmp_path}")


def test_replaced_files_are_reread(tmp_path):
    make_dir(tmp_path, seed=0)
    a = load_task(f"mnist:path={tmp_path}", "test")
    st = os.stat(tmp_path / "t10k-images-idx3-ubyte")
    make_dir(tmp_path, seed=1)
    os.utime(tmp_path / "t10k-images-idx3-ubyte", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    os.utime(tmp_path / "t10k-labels-idx1-ubyte", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = load_task(f"mnist:path={tmp_path}", "test")
    assert not torch.equal(a.x, b.x)


def test_mnist_needs_path():
    for name in ("mnist", "kmnist"):
        with pytest.raises(DataError, match="path=DIR"):
            load_task(name)


def test_fashion_without_default_folder(monkeypatch, tmp_path):
    info = dataclasses.replace(registry.REGISTRY["fashion"], default_path=str(tmp_path / "no"))
    monkeypatch.setitem(registry.REGISTRY, "fashion", info)
    assert parse_tasks("fashion") == ["fashion"]  # parsing does not look at files
    with pytest.raises(DataError) as e:
        load_task("fashion", "test")
    msg = str(e.value)
    assert "\n" not in msg and ":path=DIR" in msg and "apt-get install dataset-fashion-mnist" in msg


@pytest.mark.skipif(
    not os.path.isdir(idxmod.FASHION_DEFAULT_DIR), reason="dataset-fashion-mnist not installed"
)
def test_fashion_default_folder():
    t = load_task("fashion", "test")
    assert t.x.shape == (10000, 1, 28, 28) and t.x.max() <= 1 and t.x.min() >= 0
    assert torch.equal(torch.bincount(t.y), torch.full((10,), 1000))
    assert t.classes[:2] == ["T-shirt/top", "Trouser"]
