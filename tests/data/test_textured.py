"""`textured` (Grassy-MNIST analogue for CPVAE, paper 004 Sec. 4.1): determinism, ranges,
labels, foreground-over-texture compositing, options and their one-line errors."""

import time

import pytest
import torch

from lifelong.data import DataError, datasets, load_task, parse_tasks
from lifelong.data import textured as tex

KINDS = ["grass", "stripes", "noise", "mixed"]


@pytest.fixture(scope="module")
def plain():
    """The foreground-only images of the same draws."""
    return load_task("textured:texture=none", "test")


@pytest.mark.parametrize("texture", KINDS)
def test_range_labels_and_foreground_under_texture(texture, plain):
    t = load_task(f"textured:texture={texture}", "test")
    assert t.x.shape == (296, 1, 28, 28) and t.x.dtype == torch.float32
    assert t.x.min() >= 0 and t.x.max() <= 1
    # labels are the foreground's class, identical to the plain images' (and to `digits`)
    assert torch.equal(t.y, plain.y) and torch.equal(t.y, load_task("digits", "test").y)
    assert t.classes == [str(i) for i in range(10)]
    # x = d + (1 - d) * level * b: never darker than the foreground, equal on full ink,
    # and the background really differs from the plain (black) one
    assert torch.all(t.x >= plain.x - 1e-6)
    ink = plain.x > 0.999
    assert torch.allclose(t.x[ink], plain.x[ink], atol=1e-3)
    background = plain.x < 0.01
    assert t.x[background].mean() > 0.1 and t.x[background].std() > 0.05
    assert t.x[background].max() <= tex.LEVELS["faint"][1] + 1e-6  # ink stays the brightest
    assert t.factor_names == tex.FACTORS and torch.equal(t.factors[:, 0], t.y.float())


def test_determinism_seed_and_split(plain):
    a = load_task("textured:texture=mixed", "train", seed=0)
    b = load_task("textured:texture=mixed", "train", seed=0)
    assert torch.equal(a.x, b.x) and torch.equal(a.factors, b.factors)
    c = load_task("textured:texture=mixed", "train", seed=1)
    assert not torch.equal(a.x, c.x) and torch.equal(a.y, c.y)  # seed moves the textures only
    te = load_task("textured:texture=mixed", "test", seed=0)
    assert len(a) == 1501 and len(te) == 296
    assert not {r.numpy().tobytes() for r in a.x.flatten(1)} & {
        r.numpy().tobytes() for r in te.x.flatten(1)
    }
    # the plain foreground does not depend on the seed (digits are real data)
    assert torch.equal(load_task("textured:texture=none", "test", seed=3).x, plain.x)


def test_strong_level_brightens_the_same_textures():
    """level=strong (closer to Grassy-MNIST) draws the same textures and per-image levels as
    the default, rescaled from U(0.35, 0.65) to U(0.8, 1.0): same foreground, same labels,
    a brighter background, and the level factor in the new range."""
    faint = load_task("textured", "test")
    strong = load_task("textured:level=strong", "test")
    assert torch.equal(faint.y, strong.y)
    u = (faint.factors[:, 4] - 0.35) / 0.3  # each image's uniform draw
    assert torch.allclose(strong.factors[:, 4], 0.8 + 0.2 * u, atol=1e-5)
    plain = load_task("textured:texture=none", "test").x
    background = plain < 0.01
    assert strong.x[background].mean() > 1.4 * faint.x[background].mean()
    assert torch.all(strong.x >= faint.x - 1e-6)  # a brighter copy of the same composite
    assert parse_tasks("textured:level=strong") == ["textured:level=strong"]


def test_mixed_shows_each_kind_as_its_own_option():
    mixed = load_task("textured:texture=mixed", "test")
    kinds = mixed.factors[:, 1].long()
    assert set(kinds.tolist()) == {0, 1, 2}
    for i, kind in enumerate(tex.KINDS):
        own = load_task(f"textured:texture={kind}", "test")
        rows = kinds == i
        assert torch.equal(mixed.x[rows], own.x[rows])


def test_textures_have_their_structure():
    """Stripes are periodic along their orientation; grass blades are near-vertical (more
    variation across x than along y); noise is isotropic-ish and smooth."""
    st = load_task("textured:texture=stripes", "test")
    assert (st.factors[:, 3] >= 4).all() and (st.factors[:, 3] <= 10).all()
    grass = torch.from_numpy(tex._texture("grass", "test", 0, 64)[0])
    dx = (grass[:, :, 1:] - grass[:, :, :-1]).abs().mean()
    dy = (grass[:, 1:] - grass[:, :-1]).abs().mean()
    assert dx > 1.5 * dy
    noise = torch.from_numpy(tex._texture("noise", "test", 0, 64)[0])
    white_dx = 0.33  # mean |difference| of neighbouring uniform pixels
    assert (noise[:, :, 1:] - noise[:, :, :-1]).abs().mean() < white_dx / 2


def test_classes_make_populations_and_transforms_apply():
    a = load_task("textured:classes=0-4", "train")
    b = load_task("textured:classes=5-9", "train")
    assert set(a.y.tolist()) == {0, 1, 2, 3, 4} and set(b.y.tolist()) == {5, 6, 7, 8, 9}
    full = load_task("textured", "train")
    assert len(a) + len(b) == len(full)
    inv = load_task("textured:classes=0-4:invert", "train")
    assert torch.allclose(inv.x, 1 - a.x)
    assert load_task("textured:size=32:rgb", "test").x.shape == (296, 3, 32, 32)


def test_glyph_foreground():
    g = load_task("textured:fg=glyphs:classes=8-9", "test")
    assert [g.classes[i] for i in sorted(set(g.y.tolist()))] == ["A", "B"]
    assert len(g) == 40 and g.x.min() >= 0 and g.x.max() <= 1
    with pytest.raises(DataError, match="49 classes"):
        load_task("textured:fg=glyphs:classes=49", "test")


def test_spec_names_and_listing():
    assert parse_tasks("Textured : TEXTURE=Stripes : classes=0-4 , textured:fg=glyphs") == [
        "textured:texture=stripes:classes=0-4",
        "textured:fg=glyphs",
    ]
    info = {d["name"]: d for d in datasets()}["textured"]
    assert info["options"][:2] == ["fg=digits|glyphs", "texture=grass|stripes|noise|mixed|none"]
    assert info["train"] == 1501 and info["factors"] == tex.FACTORS


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("textured:fg=letters", "valid: digits, glyphs"),
        ("textured:texture=bricks", "valid: grass, stripes, noise, mixed, none"),
        ("textured:texture", "needs a value: texture=grass|stripes|noise|mixed|none"),
        ("textured:fg=digits:fg=glyphs", "given twice"),
        ("textured:blur", "valid options: fg=digits|glyphs, texture=grass|stripes|"),
        ("digits:texture=grass", "unknown option 'texture'"),
        ("textured:path=/tmp", "only for datasets read from files"),
    ],
)
def test_bad_options_are_one_line(spec, needle):
    with pytest.raises(DataError) as e:
        parse_tasks(spec)
    assert "\n" not in str(e.value) and needle in str(e.value)


def test_generation_is_fast():
    load_task("digits", "train")  # the foreground is cached by `digits`
    tex.textured.cache_clear()
    t0 = time.perf_counter()
    load_task("textured:texture=mixed", "train", seed=7)
    assert time.perf_counter() - t0 < 2.0
