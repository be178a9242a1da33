"""Embedded datasets: sizes, splits, determinism, MNIST-style boxing, glyph merges, shape
factors."""

import numpy as np
import pytest
import torch

from lifelong.data import datasets, load_task
from lifelong.data import embedded as emb
from lifelong.data import glyphs as gly

SIZES = {d["name"]: (d["train"], d["test"]) for d in datasets()}


@pytest.mark.parametrize("name", ["digits", "glyphs", "shapes"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_shape_dtype_range_and_size(name, split):
    t = load_task(name, split)
    n = SIZES[name][0 if split == "train" else 1]
    assert len(t) == n and t.x.shape == (n, 1, 28, 28) and t.y.shape == (n,)
    assert t.x.dtype == torch.float32 and t.y.dtype == torch.int64
    assert t.x.min() >= 0 and t.x.max() <= 1 and t.x.max() > 0.99
    assert t.y.min() >= 0 and t.y.max() < len(t.classes)
    counts = torch.bincount(t.y, minlength=len(t.classes))
    assert counts.min() > 0
    if name != "digits":  # generated sets are exactly balanced
        assert counts.min() == counts.max()


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.flatten(1)}


@pytest.mark.parametrize("name", ["digits", "glyphs", "shapes"])
def test_train_test_disjoint(name):
    tr, te = load_task(name, "train"), load_task(name, "test")
    assert not _rows(tr.x) & _rows(te.x)


def test_digits_split_is_fixed_and_stratified():
    from sklearn.datasets import load_digits

    y = load_digits().target
    assert tuple(np.bincount(y)) == emb.DIGIT_COUNTS
    mask = emb.digit_split_mask(y)
    assert mask.sum() == emb.DIGITS_TEST and (~mask).sum() == emb.DIGITS_TRAIN
    assert torch.equal(load_task("digits", seed=0).x, load_task("digits", seed=5).x)
    assert load_task("digits").classes == [str(i) for i in range(10)]


def test_digits_fill_a_20px_box_centred_by_mass():
    x = load_task("digits").x[:, 0]
    ink = x > 0
    rows, cols = ink.any(2), ink.any(1)
    height = 28 - rows.int().argmax(1) - rows.flip(1).int().argmax(1)
    width = 28 - cols.int().argmax(1) - cols.flip(1).int().argmax(1)
    long_side = torch.maximum(height, width)
    assert long_side.max() <= 20 and (long_side >= 19).float().mean() > 0.99  # fitted, not 8x8
    assert not ink[:, 0].any() and not ink[:, -1].any()
    assert not ink[:, :, 0].any() and not ink[:, :, -1].any()
    c = torch.arange(28) + 0.5
    m = x.sum((1, 2))
    com_y = (x.sum(2) * c).sum(1) / m
    com_x = (x.sum(1) * c).sum(1) / m
    assert (com_y - 14).abs().max() < 2.5 and (com_x - 14).abs().max() < 2.5
    assert (com_y - 14).abs().mean() < 0.5 and (com_x - 14).abs().mean() < 0.5


@pytest.mark.parametrize("name", ["glyphs", "shapes"])
def test_generated_sets_are_deterministic_per_seed(name):
    fn = {"glyphs": gly.glyphs, "shapes": emb.shapes}[name].__wrapped__  # bypass the cache
    a, b, c = fn("test", 0), fn("test", 0), fn("test", 1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert torch.equal(load_task(name, "test", seed=0).x, torch.from_numpy(a[0])[:, None])


def test_glyph_classes_merge_lookalikes():
    t = load_task("glyphs", "test")
    assert len(t.classes) == 49 == len(set(t.classes))
    for gone in "01locsvwxzupk":
        assert gone not in t.classes
    for kept in "23456789OICKPSUVWXZabdefghijmnqrty":
        assert kept in t.classes
    assert gly.MEMBERS[t.classes.index("O")] == "O0o"
    assert gly.MEMBERS[t.classes.index("I")] == "I1l"
    assert len(gly.fonts()) == 22


def test_glyph_ink_fits_frame():
    x = load_task("glyphs", "test").x[:, 0]
    assert x[:, 0].max() == 0 and x[:, -1].max() == 0
    assert x[:, :, 0].max() == 0 and x[:, :, -1].max() == 0


def test_shapes_factors_are_consistent():
    t = load_task("shapes")
    assert t.factor_names == ["shape", "scale", "orientation", "x", "y"]
    assert t.classes == ["square", "ellipse", "heart", "triangle"]
    f = t.factors
    assert f.shape == (len(t), 5) and f.dtype == torch.float32
    assert torch.equal(f[:, 0].long(), t.y)
    assert f[:, 1].min() >= 0.55 and f[:, 1].max() <= 1
    assert f[:, 2].min() >= 0 and f[:, 2].max() < 2 * np.pi
    assert f[:, 3:].min() >= 0 and f[:, 3:].max() <= 1
    x = t.x[:, 0]
    ink = x.sum((1, 2))
    c = torch.arange(28) + 0.5
    com_x = (x.sum(1) * c).sum(1) / ink
    com_y = (x.sum(2) * c).sum(1) / ink
    for k in range(4):
        sel = t.y == k
        assert np.corrcoef(f[sel, 1], ink[sel])[0, 1] > 0.95  # bigger scale -> more ink
        assert np.corrcoef(f[sel, 3], com_x[sel])[0, 1] > 0.8
        assert np.corrcoef(f[sel, 4], com_y[sel])[0, 1] > 0.8
    # fully inside the frame, with a 1 px margin
    assert x[:, 0].max() == 0 and x[:, -1].max() == 0
    assert x[:, :, 0].max() == 0 and x[:, :, -1].max() == 0


def test_class_subset_keeps_factors_aligned():
    t = load_task("shapes:classes=2", "test")
    assert set(t.y.tolist()) == {2} and len(t) == 250
    assert torch.equal(t.factors[:, 0].long(), t.y)
