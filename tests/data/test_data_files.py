"""SVHN (.mat), CIFAR-10 (binary) and image-folder readers, on tiny files the tests write."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong.data import DataError, image_shape, load_task


def _svhn(d, split, n, seed):
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]  # 1..10, 10 = digit 0
    savemat(d / f"{split}_32x32.mat", {"X": x, "y": y})
    return x, y


def test_svhn_mat_layout_labels_and_grey(tmp_path):
    x, y = _svhn(tmp_path, "train", 12, 0)
    _svhn(tmp_path, "test", 5, 1)
    t = load_task(f"svhn:path={tmp_path}", "train")
    assert t.x.shape == (12, 3, 32, 32) and image_shape(f"svhn:path={tmp_path}") == (3, 32, 32)
    # pixel (row 3, col 7, channel 2) of image 4 keeps its place: [H, W, C, N] -> [N, C, H, W]
    assert t.x[4, 2, 3, 7] == pytest.approx(x[3, 7, 2, 4] / 255.0)
    assert t.y.tolist() == [v % 10 for v in y[:, 0].tolist()]  # label 10 is digit 0
    g = load_task(f"svhn:path={tmp_path}:mode=grey:size=28", "test")
    assert g.x.shape == (5, 1, 28, 28)
    assert image_shape(f"svhn:path={tmp_path}:mode=grey:size=28") == (1, 28, 28)
    one = load_task(f"svhn:path={tmp_path}:classes=3", "train")
    assert set(one.y.tolist()) == {3}


def test_svhn_bad_files_are_one_line(tmp_path):
    with pytest.raises(DataError, match="no train_32x32.mat"):
        load_task(f"svhn:path={tmp_path}")
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="train_32x32.mat") as e:
        load_task(f"svhn:path={tmp_path}")
    assert "\n" not in str(e.value)


def _cifar_bin(path, n, seed):
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    np.concatenate([labels[:, None], pixels], 1).tofile(path)
    return labels, pixels


def test_cifar10_binary_records(tmp_path):
    parts = [_cifar_bin(tmp_path / f"data_batch_{i}.bin", 4, i) for i in range(1, 6)]
    _cifar_bin(tmp_path / "test_batch.bin", 3, 9)
    t = load_task(f"cifar10:path={tmp_path}")
    assert t.x.shape == (20, 3, 32, 32)
    labels, pixels = parts[1]  # batch 2 follows batch 1
    assert t.y[4:8].tolist() == labels.tolist()
    # record layout: 1024 red, 1024 green, 1024 blue, row-major
    assert t.x[5, 1, 2, 3] == pytest.approx(pixels[1, 1024 + 2 * 32 + 3] / 255.0)
    assert t.classes[0] == "airplane"
    assert load_task(f"cifar10:path={tmp_path}:mode=grey", "test").x.shape == (3, 1, 32, 32)


def test_cifar10_refuses_pickles_and_truncated_records(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as f:  # the python version: a pickle
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(DataError, match="never loads"):
        load_task(f"cifar10:path={tmp_path}")
    np.zeros(3072, np.uint8).tofile(tmp_path / "data_batch_1.bin")
    with pytest.raises(DataError, match="whole number"):
        load_task(f"cifar10:path={tmp_path}")


def _folder(root, classes, per_class, size=(40, 30), mode="L"):
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            value = 40 * ci + i
            Image.new(mode, size, value if mode == "L" else (value, 0, 255)).save(
                root / c / f"{c}-{i:03d}.png"
            )


def test_folder_classes_split_and_conversion(tmp_path):
    _folder(tmp_path, ["cat", "ant", "bee"], 20)
    (tmp_path / "notes.txt").write_text("ignored")
    train = load_task(f"folder:path={tmp_path}", "train")
    test = load_task(f"folder:path={tmp_path}", "test")
    assert train.classes == ["ant", "bee", "cat"]  # sorted folder names
    assert len(train) + len(test) == 60 and 0 < len(test) < 20
    assert train.x.shape[1:] == (1, 28, 28)  # centre-cropped and resized
    # every image is flat, of its class's grey value: labels follow the folders
    v = (train.x[:, 0, 14, 14] * 255).round().long()
    assert torch.all((v // 40) == torch.tensor([1, 2, 0])[train.y])
    # the same files land on the same side every time
    assert torch.equal(load_task(f"folder:path={tmp_path}", "test").x, test.x)


def test_folder_train_test_subfolders_rgb_and_errors(tmp_path):
    _folder(tmp_path / "train", ["a", "b"], 3, mode="RGB")
    _folder(tmp_path / "test", ["a", "b"], 2, mode="RGB")
    t = load_task(f"folder:path={tmp_path}:mode=rgb", "test")
    assert t.x.shape == (4, 3, 28, 28) and image_shape(f"folder:path={tmp_path}:mode=rgb")[0] == 3
    assert t.x[0, 2].mean() == pytest.approx(1.0)  # blue channel kept
    (tmp_path / "test" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_task(f"folder:path={tmp_path}:mode=rgb", "test")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_task(f"folder:path={empty}")
    with pytest.raises(DataError, match="mode"):
        load_task(f"folder:path={tmp_path}:mode=cmyk")
