"""Directions to slide (issue 18 part 3) and the app's batch-device chooser (part 4)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from lifelong.data import TaskData
from lifelong.explore import device, directions, traversal
from lifelong.models import REGISTRY, build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.train.trainer import build_config
from tests.conftest import synthetic_task


def _model():
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3)).eval()


def _tests() -> list[TaskData]:
    """Two tasks: horizontal bars labelled a/b by position, then blobs labelled b."""
    bars, blobs = synthetic_task("hbar", 64), synthetic_task("blob", 32, seed=1)
    y = (bars.x[:, 0, :14].sum((1, 2)) > 0).long()  # a bar in the upper half: class "b"
    return [
        TaskData("bars", bars.x, y, ["a", "b"]),
        TaskData("blobs", blobs.x, torch.ones(32, dtype=torch.long), ["a", "b"]),
    ]


def test_groups_are_the_present_classes_or_the_tasks():
    tests = _tests()
    assert directions.group_names(tests, ["bars", "blobs"], "class") == ["a", "b"]
    assert directions.group_names(tests, ["bars", "blobs"], "task") == ["0: bars", "1: blobs"]
    b = directions.group_images(tests, "class", "b")
    assert len(b) == int(tests[0].y.sum()) + 32  # class b over both tasks
    assert torch.equal(directions.group_images(tests, "task", "1: blobs"), tests[1].x)
    assert len(directions.group_images(tests, "class", "zebra")) == 0
    with pytest.raises(ValueError, match="valid are class, task"):
        directions.group_names(tests, [], "colour")


def test_the_means_are_the_groups_mean_posterior_means_and_decode_at_t_0_and_1():
    model, tests = _model(), _tests()
    a = directions.group_images(tests, "class", "a")
    b = directions.group_images(tests, "class", "b")
    d = directions.between(model, a, b, expert=1)
    assert d.blocks == ["z1"] and d.dims == [3] and d.counts == (len(a), len(b))
    with torch.no_grad():
        assert torch.allclose(d.start, model.encode(a, 1)["z1"]["mu"].mean(0), atol=1e-6)
        assert torch.allclose(d.end, model.encode(b, 1)["z1"]["mu"].mean(0), atol=1e-6)
    assert not d.is_zero() and d.norm > 0
    panel = {"z1": [2.0, -1.0, 0.5]}
    imgs = directions.decode_along(model, d, panel, [0.0, 1.0, 0.5])
    assert imgs.shape == (3, 1, 28, 28)
    for img, mean in ((imgs[0], d.start), (imgs[1], d.end), (imgs[2], (d.start + d.end) / 2)):
        assert torch.allclose(img, traversal.decode(model, {"z1": mean.tolist()}, 1)[0], atol=1e-6)
    # anchored at the panel's code: t = 0 is the panel's image, t = 1 moved by the difference
    imgs = directions.decode_along(model, d, panel, [0.0, 1.0], anchor="code")
    base = torch.tensor(panel["z1"])
    assert torch.allclose(imgs[0], traversal.decode(model, panel, 1)[0], atol=1e-6)
    moved = (base + d.vector).tolist()
    assert torch.allclose(imgs[1], traversal.decode(model, {"z1": moved}, 1)[0], atol=1e-6)
    with pytest.raises(ValueError, match="anchor"):
        directions.codes_along(d, panel, [0.0], anchor="elsewhere")


def test_the_same_group_twice_is_a_zero_direction():
    model, tests = _model(), _tests()
    a = directions.group_images(tests, "class", "a")
    d = directions.between(model, a, a.clone(), expert=0)
    assert d.is_zero() and d.norm == 0
    with pytest.raises(ValueError, match="zero"):
        directions.positions(model, a, d)
    with pytest.raises(ValueError, match="no image"):
        directions.between(model, a, a[:0], expert=0)


def test_positions_project_codes_onto_the_direction():
    model, tests = _model(), _tests()
    a = directions.group_images(tests, "class", "a")
    b = directions.group_images(tests, "class", "b")
    d = directions.between(model, a, b, expert=0)
    t_a, t_b = directions.positions(model, a, d), directions.positions(model, b, d)
    # the projection is linear: each group's mean position is 0 and 1
    assert float(t_a.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(t_b.mean()) == pytest.approx(1.0, abs=1e-5)
    # a code placed at t along the direction projects to t
    codes = directions.codes_along(d, {"z0": [0.0, 0.0, 0.0]}, [-0.5, 0.25, 1.5])["z0"]
    v = d.vector
    assert torch.allclose((codes - d.start) @ v / (v @ v), torch.tensor([-0.5, 0.25, 1.5]))
    # batched encoding does not change the answer
    assert torch.allclose(directions.positions(model, a, d, batch=7), t_a, atol=1e-6)


def test_binned_values_open_at_both_ends():
    names, group = directions.binned(
        torch.tensor([-9.0, -0.5, 0.0, 0.49, 0.5, 1.5, 9.0]), -0.5, 1.5, 4
    )
    assert names == ["≤ 0.00", "0.00..0.50", "0.50..1.00", "≥ 1.00"]
    assert group.tolist() == [[0, 0, 1, 1, 2, 3, 3]]


@pytest.mark.parametrize("family", sorted(REGISTRY))
def test_every_familys_direction_lives_in_its_encoders_gaussian_blocks(family):
    """Per family: the blocks moved (CPVAE's shared z, LGM's z_c, InfoGAN's c and the noise z
    its S network leaves at 0), and the sweep decodes through the panel's expert."""
    torch.manual_seed(0)
    tasks = ["digits:classes=0-4", "digits:classes=5-9"]
    model = build(family, build_config(family, tasks, {})).eval()
    x = synthetic_task("hbar", 8).x
    expert = (model.experts() or [None])[0]
    d = directions.between(model, x[:4], synthetic_task("blob", 4).x, expert)
    want = {"cpvae": ["z"], "lgm": ["zc"], "infogan": ["c", "z"]}.get(family)
    own = [b.name for b in traversal.blocks_for(model, expert) if b.kind == "gaussian"]
    assert d.blocks == (want or own), family
    if family == "infogan":  # S does not infer z: no direction moves it
        assert torch.equal(d.split(d.vector[None])["z"], torch.zeros(1, model.config.noise_dim))
    start = traversal.panel_codes(model, traversal.start_from_image(model, x[:1], expert))
    imgs = directions.decode_along(model, d, start, [0.0, 1.0])
    assert imgs.shape[0] == 2 and torch.isfinite(imgs).all()
    means = {k: v[0].tolist() for k, v in d.split(d.start[None]).items()}
    want0 = traversal.decode(model, {**start, **means}, expert)
    assert torch.allclose(imgs[:1], want0, atol=1e-6)


def test_exports():
    model, tests = _model(), _tests()
    a, b = (directions.group_images(tests, "class", n) for n in "ab")
    d = directions.between(model, a, b, expert=0)
    ts = np.linspace(-0.5, 1.5, 5)
    codes = directions.codes_along(d, {"z0": [0.0] * 3}, ts)
    imgs = directions.decode_along(model, d, {"z0": [0.0] * 3}, ts)
    assert directions.grid_png(imgs)[:8] == b"\x89PNG\r\n\x1a\n"
    assert directions.sweep_gif(imgs)[:6] == b"GIF89a"
    npz = np.load(io.BytesIO(directions.sweep_npz(d, ts, codes, imgs)))
    assert npz["images"].shape == (5, 1, 28, 28) and npz["images"].dtype == np.uint8
    assert np.allclose(npz["code_z0"][1], d.start.numpy() + 0.0 * d.vector.numpy())
    assert list(npz["blocks"]) == ["z0"]


# -- the batch device (part 4) ---------------------------------------------------------------


def test_env_values_parse():
    assert device.parse(None) == device.parse("") == device.parse("  ") == "auto"
    assert device.parse(" CUDA ") == "cuda" and device.parse("cpu") == "cpu"
    with pytest.raises(device.DeviceError, match=r"LIFELONG_APP_DEVICE='gpu' is not one of auto"):
        device.parse("gpu")


@pytest.mark.parametrize("has_cuda", [False, True])
def test_the_chooser_follows_cuda_the_env_and_the_setting(monkeypatch, has_cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    gpu = "cuda" if has_cuda else "cpu"
    assert device.batch_device(None) == (gpu, None)
    assert device.batch_device("auto") == (gpu, None)
    assert device.batch_device("cpu") == ("cpu", None)
    dev, note = device.batch_device("cuda")
    assert dev == gpu and (note is None) == has_cuda
    if not has_cuda:
        assert note == "cuda was asked for but no CUDA device is available here: using the CPU."
    # the sidebar's setting wins over the environment
    assert device.batch_device("cuda", "cpu") == ("cpu", None)
    assert device.batch_device("cpu", "auto") == (gpu, None)
    # an invalid value is a note, not an error, and auto applies
    dev, note = device.batch_device("gpu0")
    assert dev == gpu and note.startswith("LIFELONG_APP_DEVICE='gpu0' is not one of auto, cpu")
    assert note.count("\n") == 0


def test_point_positions_follow_the_points_order():
    model, tests = _model(), _tests()
    a, b = (directions.group_images(tests, "class", n) for n in "ab")
    d = directions.between(model, a, b, expert=1)
    task = torch.tensor([1, 0, 1, 0, 0])
    index = torch.tensor([3, 10, 0, 2, 63])
    got = directions.point_positions(model, tests, task, index, d, batch=2)
    x = torch.stack([tests[t].x[i] for t, i in zip(task.tolist(), index.tolist(), strict=True)])
    assert torch.allclose(got, directions.positions(model, x, d), atol=1e-6)
