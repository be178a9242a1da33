"""Hostile dataset files (issue 14): sizes are checked before memory is spent, and every bad
file is one line. IDX (gzipped or not), SVHN .mat and CIFAR-10 binary files are written here;
the memory a refusal costs is measured with tracemalloc (numpy reports its buffers to it)."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from lifelong.data import DataError, files, load_task
from lifelong.data import idx as idxmod


def header(dims, kind=0x08) -> bytes:
    return bytes([0, 0, kind, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def idx_bytes(a: np.ndarray, kind=0x08) -> bytes:
    dtype = np.dtype(idxmod.IDX_TYPES[kind])
    return header(a.shape, kind) + a.astype(dtype).tobytes()


def mnist_dir(d, images: bytes, labels: bytes, gz_images=False):
    d.mkdir(exist_ok=True)
    name = "train-images-idx3-ubyte" + (".gz" if gz_images else "")
    (d / name).write_bytes(gzip.compress(images) if gz_images else images)
    (d / "train-labels-idx1-ubyte").write_bytes(labels)
    return d


def peak_bytes(fn) -> tuple[int, BaseException | None]:
    """Peak traced allocation while fn() runs, and what it raised."""
    tracemalloc.start()
    try:
        fn()
        err = None
    except Exception as e:  # noqa: BLE001  (returned to the test)
        err = e
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, err


def gz_bomb(path, head: bytes, inflated: int) -> None:
    """A gzip file of `head` followed by `inflated` zero bytes, written in chunks."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(co.compress(head))
        for _ in range(inflated >> 20):
            f.write(co.compress(zeros))
        f.write(co.flush())


def test_gzip_bomb_behind_a_valid_header_costs_no_memory(tmp_path):
    d = tmp_path / "bomb"
    d.mkdir()
    gz_bomb(d / "train-images-idx3-ubyte.gz", header((4, 28, 28)), 64 << 20)  # 64 MB inflated
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    assert (d / "train-images-idx3-ubyte.gz").stat().st_size < 200_000
    peak, err = peak_bytes(lambda: load_task(f"mnist:path={d}"))
    assert isinstance(err, DataError) and "\n" not in str(err)
    assert "header says dims (4, 28, 28)" in str(err) and "holds more than" in str(err)
    assert peak < 8 << 20, peak  # chunks only: the 64 MB are counted, never kept


def test_declared_size_is_refused_before_any_payload(tmp_path):
    # a header declaring 2**32-1 images of 28x28 over 10 bytes of data
    d = mnist_dir(tmp_path / "huge", header((2**32 - 1, 28, 28)) + bytes(10), b"")
    with pytest.raises(DataError, match=r"declares dims \(4294967295, 28, 28\).*allowed"):
        load_task(f"mnist:path={d}")
    huge = tmp_path / "dims"
    huge.write_bytes(header((2**32 - 1,) * 3))
    with pytest.raises(DataError, match="more than the"):
        idxmod.read_idx(str(huge))
    # wrong image size and label/image count mismatch: decided from the headers alone (the
    # payloads here are truncated, so reading them would give another message)
    x = header((4, 8, 8)) + bytes(10)
    d = mnist_dir(tmp_path / "small", x, idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match=r"expected 28x28 images, got \(8, 8\)"):
        load_task(f"mnist:path={d}")
    x = header((4, 28, 28)) + bytes(10)
    d = mnist_dir(tmp_path / "count", x, header((5,)) + bytes(5))
    with pytest.raises(DataError, match="has 5 labels but train-images-idx3-ubyte has 4"):
        load_task(f"mnist:path={d}")


@pytest.mark.parametrize("gz", [False, True])
def test_more_or_fewer_bytes_than_declared(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))  # 16 + 2352 = 2368 bytes
    long = "more than 2368" if gz else "2369"  # a gzip stream is not inflated to its end
    for name, raw, holds in (("long", data + b"\0", long), ("short", data[:-5], "2363")):
        p = tmp_path / name
        p.write_bytes(gzip.compress(raw) if gz else raw)
        with pytest.raises(DataError) as e:
            idxmod.read_idx(str(p))
        assert str(e.value) == (
            f"{name}: header says dims (3, 28, 28) (2368 bytes) but the file holds {holds} bytes"
        )


def test_corrupt_gzip_and_bad_headers_are_one_line(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(3 * 28 * 28).reshape(3, 28, 28) % 251))
    cases = {
        "cut.gz": good[: len(good) // 2],  # truncated deflate stream
        "garbage.gz": b"\x1f\x8b" + bytes(40),  # gzip magic, no gzip behind it
        "flipped.gz": good[:30] + bytes(b ^ 0xFF for b in good[30:60]) + good[60:],
        "magic": b"\x12\x34\x56\x78" + bytes(100),
        "type": bytes([0, 0, 0x07, 1]) + bytes(8),  # unknown type byte
        "ndim0": bytes([0, 0, 0x08, 0]),
        "short": bytes([0, 0, 0x08, 3, 0, 0]),  # header cut inside the dims
        "empty": b"",
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(DataError) as e:
            idxmod.read_idx(str(tmp_path / name))
        assert name in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


def test_labels_must_be_integers_of_one_dimension(tmp_path):
    x = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    d = mnist_dir(tmp_path / "f", x, idx_bytes(np.zeros(2, np.float32), 0x0D))
    with pytest.raises(DataError, match="expected integer labels"):
        load_task(f"mnist:path={d}")
    d = mnist_dir(tmp_path / "2d", x, idx_bytes(np.zeros((2, 1), np.uint8)))
    with pytest.raises(DataError, match=r"expected integer labels \[N\]"):
        load_task(f"mnist:path={d}")
    # 16-bit big-endian labels are integers: read with their byte order
    d = mnist_dir(tmp_path / "i2", x, idx_bytes(np.array([3, 7]), 0x0B))
    assert load_task(f"mnist:path={d}").y.tolist() == [3, 7]


def test_empty_idx_split_or_class_subset_is_refused(tmp_path):
    d = mnist_dir(
        tmp_path / "e", idx_bytes(np.zeros((0, 28, 28), np.uint8)), idx_bytes(np.zeros(0))
    )
    with pytest.raises(DataError, match="has no train images"):
        load_task(f"mnist:path={d}")
    x, y = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)  # only zeros
    d = mnist_dir(tmp_path / "zeros", idx_bytes(x), idx_bytes(y))
    assert len(load_task(f"mnist:path={d}:classes=0")) == 3
    # refused before the transforms (an empty batch would fail inside them)
    with pytest.raises(DataError, match="classes=5:rotate=10:size=32' has no train images"):
        load_task(f"mnist:path={d}:classes=5:size=32:rotate=10")


# -- SVHN .mat ---------------------------------------------------------------------------------


def _mat(path, n, compress=False, **extra):
    from scipy.io import savemat

    x = np.zeros((32, 32, 3, n), np.uint8)
    savemat(path, {"X": x, "y": np.ones((n, 1)), **extra}, do_compression=compress)


def _elements(raw: bytes):
    """(header, [element bytes]) of an uncompressed little-endian MATLAB v5 file."""
    out, pos = [], 128
    while pos < len(raw):
        _, n = struct.unpack("<II", raw[pos : pos + 8])
        out.append(raw[pos : pos + 8 + n])
        pos += 8 + n
    return raw[:128], out


def test_svhn_zlib_bomb_under_a_small_declared_x_is_refused_cheaply(tmp_path):
    _mat(tmp_path / "plain.mat", 4)
    head, (x_el, y_el) = _elements((tmp_path / "plain.mat").read_bytes())
    # X declares 4 images, but its compressed element inflates to 32 MB more
    bomb = zlib.compress(x_el + bytes(32 << 20), 9)
    d = tmp_path / "svhn"
    d.mkdir()
    mat = head + struct.pack("<II", 15, len(bomb)) + bomb + y_el
    (d / "train_32x32.mat").write_bytes(mat)
    assert len(mat) < 100_000
    peak, err = peak_bytes(lambda: load_task(f"svhn:path={d}"))
    assert isinstance(err, DataError), err
    assert "inflate to" in str(err) and "more than X and y declare" in str(err)
    assert peak < 8 << 20, peak


def test_svhn_size_and_shape_checks(tmp_path, monkeypatch):
    d = tmp_path / "s"
    d.mkdir()
    path = d / "train_32x32.mat"
    monkeypatch.setattr(files, "SVHN_MAX_IMAGES", 5)
    monkeypatch.setattr(files, "MAT_SLACK", 1024)
    _mat(path, 60, compress=True)  # inflates past what 5 images may take
    with pytest.raises(DataError, match="inflate to more than"):
        load_task(f"svhn:path={d}")
    monkeypatch.setattr(files, "MAT_SLACK", 1 << 16)
    _mat(path, 6)  # small enough to inflate, but more images than allowed
    with pytest.raises(DataError, match="6 images, more than the 5 allowed"):
        load_task(f"svhn:path={d}")
    from scipy.io import savemat

    savemat(path, {"X": np.zeros((28, 28, 3), np.uint8), "y": np.ones(1)})
    with pytest.raises(DataError, match=r"expected X uint8 \[32, 32, 3, N\]"):
        load_task(f"svhn:path={d}")
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones(3)})
    with pytest.raises(DataError, match="expected 2 numeric labels"):
        load_task(f"svhn:path={d}")
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([1.5, 2])})
    with pytest.raises(DataError, match="whole numbers"):
        load_task(f"svhn:path={d}")
    v73 = bytearray(128)
    v73[:19] = b"MATLAB 7.3 MAT-file"
    v73[124:128] = b"\x00\x02IM"
    path.write_bytes(bytes(v73) + bytes(64))
    with pytest.raises(DataError, match="v7.3"):
        load_task(f"svhn:path={d}")
    _mat(path, 3)
    path.write_bytes(path.read_bytes()[:-100])  # cut inside y
    with pytest.raises(DataError, match="train_32x32.mat") as e:
        load_task(f"svhn:path={d}")
    assert "\n" not in str(e.value)


# -- CIFAR-10 binary ---------------------------------------------------------------------------


def test_cifar_batch_size_is_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CIFAR_MAX_RECORDS", 2)
    (tmp_path / "test_batch.bin").write_bytes(bytes(3 * files.CIFAR_RECORD))
    read = []
    monkeypatch.setattr(files.np, "fromfile", lambda *a, **k: read.append(a))
    with pytest.raises(DataError, match=r"1 to 2 of them"):
        load_task(f"cifar10:path={tmp_path}", "test")
    assert read == []  # refused from the file's size alone


def test_svhn_compressed_mat_reads_like_the_plain_one(tmp_path):
    from scipy.io import savemat

    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)
    y = np.array([10, 1, 2, 3, 4, 5, 6], np.uint8)[:, None]
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y}, do_compression=True)
    t = load_task(f"svhn:path={tmp_path}", "test")
    assert t.y.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert t.x[3, 1, 5, 9] == pytest.approx(x[5, 9, 1, 3] / 255.0)
