"""Spec parsing, image_shape, datasets() and every transform option."""

import pytest
import torch

from lifelong.data import DataError, TaskData, datasets, image_shape, load_task, parse_tasks
from lifelong.data import transforms as tf


@pytest.fixture(scope="module")
def plain():
    return load_task("digits", "test")


def test_parse_tasks_normalises():
    assert parse_tasks("digits:classes=0-4,digits:classes=5-9,glyphs") == [
        "digits:classes=0-4",
        "digits:classes=5-9",
        "glyphs",
    ]
    # case, spaces, option order and class lists are normalised; options in application order
    assert parse_tasks(" Digits : INVERT : classes=7+0+1+2+3+4 , shapes:rgb:size=32") == [
        "digits:classes=0-4+7:invert",
        "shapes:size=32:rgb",
    ]
    assert parse_tasks("glyphs:rotate=90.0:permute=3") == ["glyphs:rotate=90:permute=3"]
    assert parse_tasks("digits:rotate=-12.5") == ["digits:rotate=-12.5"]
    assert parse_tasks("digits:classes=3") == ["digits:classes=3"]
    assert parse_tasks("mnist:path=/no/such/dir") == ["mnist:path=/no/such/dir"]  # no file I/O
    assert parse_tasks("fashion") == ["fashion"]
    assert parse_tasks("glyphs:classes=48") == ["glyphs:classes=48"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "no tasks"),
        ("   ", "no tasks"),
        ("digits,,glyphs", "empty task"),
        ("digits,", "empty task"),
        ("mnsit", "valid names: digits, glyphs, shapes, mnist, fashion, kmnist"),
        ("digits:blur", "valid options: classes=A-B, rotate=DEG, size=N, permute=SEED, invert"),
        ("digits::invert", "valid options"),
        ("digits:path=/tmp", "only for datasets read from files"),
        ("mnist", "path=DIR"),
        ("kmnist:invert", "path=DIR"),
        ("digits:invert:invert", "given twice"),
        ("digits:rotate=1:rotate=2", "given twice"),
        ("digits:invert=yes", "takes no value"),
        ("digits:rotate", "needs a value"),
        ("digits:rotate=abc", "not a number"),
        ("digits:rotate=nan", "not a number"),
        ("digits:permute=x", "not an integer"),
        ("digits:permute=-1", ">= 0"),
        ("digits:size=3", "out of range"),
        ("digits:size=32.5", "not an integer"),
        ("digits:classes=0-10", "out of range"),
        ("glyphs:classes=49", "49 classes"),
        ("digits:classes=5-2", "bad classes"),
        ("digits:classes=a", "bad classes"),
        ("digits:classes=", "bad classes"),
        ("mnist:path=", "empty path"),
        # hostile values (issue 14): refused before anything is built (classes=0-1e11 once
        # built a set of 10^11 ints and took the machine's memory)
        ("digits:classes=0-99999999999", "class indexes 0..9999"),
        ("folder:path=/x:classes=0-99999999999", "class indexes 0..9999"),
        ("textured:classes=10000", "class indexes 0..9999"),
        ("digits:permute=18446744073709551616", "at most 18446744073709551615"),
        ("digits:size=99999999999999999999", "out of range"),
        ("digits:rotate=1e400", "not a number"),
        ("dig\nits", "control character in dataset spec 'dig\\nits'"),
        ("digits:in\tvert", "control character"),
        ("mnist:path=/tmp/a\x00b", "control character"),
        ("digits,\n,glyphs", "empty task at position 2 in 'digits, ,glyphs'"),
    ],
)
def test_parse_tasks_rejects(text, needle):
    with pytest.raises(DataError) as e:
        parse_tasks(text)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg


def test_load_task_rejects_bad_split_and_lists():
    with pytest.raises(DataError, match="valid splits: train, test"):
        load_task("digits", "val")
    with pytest.raises(DataError, match="list of tasks"):
        load_task("digits,glyphs")


@pytest.mark.parametrize(
    "spec, shape",
    [("digits", (1, 28, 28)), ("digits:size=32", (1, 32, 32)), ("shapes:rgb", (3, 28, 28)),
     ("digits:size=16:rgb:invert", (3, 16, 16))],
)  # fmt: skip
def test_image_shape_matches_data(spec, shape):
    assert image_shape(spec) == shape
    assert load_task(spec, "test").x.shape[1:] == shape


def test_datasets_listing():
    info = {d["name"]: d for d in datasets()}
    assert list(info) == [
        "digits", "glyphs", "shapes", "mnist", "fashion", "kmnist", "textured", "svhn", "cifar10",
        "folder",
    ]  # fmt: skip
    for d in info.values():
        assert {"name", "shape", "train", "test", "purpose", "options"} <= set(d)
        colour = d["name"] in ("svhn", "cifar10")
        assert d["shape"] == ("3x32x32" if colour else "1x28x28") and "\n" not in d["purpose"]
        from_files = ("mnist", "fashion", "kmnist", "svhn", "cifar10", "folder")
        assert ("path=DIR" in d["options"]) == (d["name"] in from_files)
    assert info["mnist"]["train"] == "from files"
    assert (info["shapes"]["train"], info["shapes"]["test"]) == (6000, 1000)


def test_taskdata_and_name(plain):
    assert isinstance(plain, TaskData) and plain.name == "digits"
    assert plain.factors is None and plain.factor_names is None
    t = load_task("digits:invert:classes=0+1", "test")
    assert t.name == "digits:classes=0-1:invert"


def test_invert(plain):
    t = load_task("digits:invert", "test")
    assert torch.equal(t.x, 1 - plain.x) and torch.equal(t.y, plain.y)
    assert torch.allclose(tf.invert(tf.invert(plain.x)), plain.x, atol=1e-6, rtol=0)


def test_rotate(plain):
    x = plain.x
    r = x
    for _ in range(4):
        r = tf.rotate(r, 90)
    assert torch.allclose(r, x)
    assert torch.equal(load_task("digits:rotate=90", "test").x, torch.rot90(x, 1, (2, 3)))
    assert torch.allclose(load_task("digits:rotate=360", "test").x, x)
    # generic angles go through bilinear sampling: 4 x 90.0001 is close to identity
    r = x
    for _ in range(4):
        r = tf.rotate(r, 90.0001)
    assert (r - x).abs().mean() < 0.02
    # 30 degrees then -30 degrees: close to the original, blurred a little by interpolation
    back = tf.rotate(tf.rotate(x, 30), -30)
    assert (back - x).abs().mean() < 0.05
    # counter-clockwise: a dot right of centre moves above it
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 14, 24] = 1
    ys, xs = tf.rotate(dot, 45)[0, 0].nonzero(as_tuple=True)
    assert ys.float().mean() < 12 and xs.float().mean() > 16


def test_rotate_before_invert():
    x = load_task("digits:rotate=30:invert", "test").x
    assert x.shape == (296, 1, 28, 28) and torch.all(x[:, :, 0, 0] == 1)  # corners = background


def test_permute(plain):
    t = load_task("digits:permute=3", "test")
    perm = tf.permutation(3, 28 * 28)
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))
    assert torch.equal(t.x.flatten(1), plain.x.flatten(1)[:, perm])
    assert torch.equal(t.x.flatten(1).sort(1).values, plain.x.flatten(1).sort(1).values)
    assert not torch.equal(t.x, load_task("digits:permute=4", "test").x)
    assert torch.equal(t.x, load_task("digits:permute=3", "test").x)


@pytest.mark.parametrize(
    "spec, wanted",
    [("digits:classes=0-4", {0, 1, 2, 3, 4}), ("digits:classes=5-9", {5, 6, 7, 8, 9}),
     ("digits:classes=3", {3}), ("digits:classes=0+2+7", {0, 2, 7}),
     ("digits:classes=0-1+8", {0, 1, 8})],
)  # fmt: skip
def test_class_subset(plain, spec, wanted):
    t = load_task(spec, "test")
    assert set(t.y.tolist()) == wanted
    assert t.classes == plain.classes
    keep = torch.isin(plain.y, torch.tensor(sorted(wanted)))
    assert torch.equal(t.x, plain.x[keep]) and torch.equal(t.y, plain.y[keep])


def test_glyph_class_subset_refers_to_positions():
    t = load_task("glyphs:classes=8-9", "test")
    assert [t.classes[i] for i in sorted(set(t.y.tolist()))] == ["A", "B"]


def test_size_and_rgb(plain):
    t = load_task("digits:size=32:rgb", "test")
    assert t.x.shape == (296, 3, 32, 32) and t.x.min() >= 0 and t.x.max() <= 1
    assert torch.equal(t.x[:, 0], t.x[:, 1]) and torch.equal(t.x[:, 1], t.x[:, 2])
    small = load_task("digits:size=14", "test").x
    assert torch.allclose(small.mean((1, 2, 3)), plain.x.mean((1, 2, 3)), atol=0.02)


def test_results_are_copies(plain):
    a = load_task("digits", "test")
    a.x.zero_()
    a.y.zero_()
    b = load_task("digits", "test")
    assert torch.equal(b.x, plain.x) and torch.equal(b.y, plain.y)


def test_extreme_but_valid_values_load():
    # a huge angle is a whole number of turns plus a remainder: finite, in [0, 1]
    t = load_task("digits:rotate=1e308:classes=0", "test")
    assert torch.isfinite(t.x).all() and 0 <= t.x.min() and t.x.max() <= 1
    p = load_task("digits:permute=18446744073709551615:classes=0", "test")
    assert p.x.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("seed", [-1, "abc", None, float("nan"), float("inf")])
def test_bad_seeds_are_one_line(seed):
    with pytest.raises(DataError, match="bad seed .*: use an integer >= 0"):
        load_task("glyphs:classes=0", "test", seed)
