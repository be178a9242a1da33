"""Traversal computations behind the Latent traversal page."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong.explore import images, overview, summary, traversal
from lifelong.models import REGISTRY, build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.train.trainer import build_config
from tests.conftest import synthetic_task


def _model():
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3)).eval()


def test_start_from_image_uses_the_routed_expert_and_decodes_its_reconstruction():
    model = _model()
    x = synthetic_task("hbar", 1).x
    start = traversal.start_from_image(model, x)
    assert start.routed and start.expert == int(model.select(x)[0])
    assert list(start.codes) == [f"z{start.expert}"]
    img = traversal.decode(model, start.codes, start.expert)
    assert torch.allclose(img, model.reconstruct(x), atol=1e-6)
    hand = traversal.start_from_image(model, x, expert=1 - start.expert)
    assert not hand.routed and list(hand.codes) == [f"z{1 - start.expert}"]


def test_sweep_moves_one_variable_per_row():
    model = _model()
    start = traversal.start_from_prior(model, expert=0, seed=3)
    values = np.linspace(-3, 3, 5)
    imgs, labels = traversal.sweep(model, start, values)
    assert imgs.shape == (3 * 5, 1, 28, 28) and labels == ["z0[0]", "z0[1]", "z0[2]"]
    base = torch.tensor(start.codes["z0"])
    for i in range(3):
        for c, v in enumerate(values):
            z = base.clone()
            z[i] = float(v)
            expected = model.decode({"z0": z[None]}, 0)
            assert torch.allclose(imgs[i * 5 + c], expected[0], atol=1e-5)


def test_prior_start_is_reproducible_by_seed():
    model = _model()
    a = traversal.start_from_prior(model, 1, seed=7).codes
    assert a == traversal.start_from_prior(model, 1, seed=7).codes
    assert a != traversal.start_from_prior(model, 1, seed=8).codes


def test_png_and_gif_exports_are_valid_images():
    model = _model()
    start = traversal.start_from_prior(model, 0)
    imgs, _ = traversal.sweep(model, start, np.linspace(-3, 3, 7))
    png = Image.open(io.BytesIO(traversal.sweep_png(imgs, 7)))
    assert png.format == "PNG" and png.size[0] > 7 * 28
    gif = Image.open(io.BytesIO(traversal.sweep_gif(imgs, 7)))
    assert gif.format == "GIF" and gif.n_frames == 7 + 5  # there and back


def test_grid_layout():
    imgs = torch.zeros(5, 1, 4, 4)
    imgs[3] = 1.0
    g = images.grid(imgs, ncol=3, pad=1)
    assert g.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and g.dtype == np.uint8
    assert (g[6:10, 1:5] == 255).all() and (g[1:5, 1:5] == 0).all()


def test_task_reconstructions_report_routing():
    model = _model()
    tasks = [synthetic_task("hbar", 4), synthetic_task("vbar", 4)]
    rows = overview.task_reconstructions(model, tasks, n=4)
    assert [r["task"] for r in rows] == [0, 1]
    assert all(len(r["experts"]) == 4 and r["recon"].shape == (4, 1, 28, 28) for r in rows)


def test_event_rows_describe_the_boundaries():
    from lifelong import events as ev

    class FakeRun:
        events = [
            ev.Assignment(1, expert_loss=[1.0, 2.0], p_c=[0.3, 0.7], chosen=1),
            ev.ExpertFrozen(1, expert=1, holds_task=0),
            ev.ExpertAdded(2, expert=2, distances=[5.0, 6.0]),
        ]

    rows = summary.event_rows(FakeRun(), upto=1)
    assert [r["event"] for r in rows] == ["assignment", "expert_frozen"]
    assert "-> expert 1" in rows[0]["details"] and "depository of task 0" in rows[1]["details"]


def test_informativeness_is_zero_for_a_variable_the_encoder_ignores():
    model = _model()
    expert = 0
    # make z0[1] carry nothing: its posterior is the prior whatever the input
    head = model.experts_[expert].enc_head.net[-1]
    with torch.no_grad():
        head.weight[1].zero_()
        head.bias[1] = 0.0
        head.weight[3 + 1].zero_()
        head.bias[3 + 1] = 0.0
    x = torch.cat([synthetic_task(k, 16, seed=i).x for i, k in enumerate(["hbar", "vbar"])])
    kl = traversal.informativeness(model, x, expert)["z0"]
    assert len(kl) == 3 and abs(kl[1]) < 1e-6 and min(kl[0], kl[2]) > 1e-4
    lo_hi = traversal.posterior_ranges(model, x, expert)["z0"]
    mu = model.encode(x, expert)["z0"]["mu"]
    assert lo_hi[0] == (mu[:, 0].min().item(), mu[:, 0].max().item())
    assert lo_hi[1] == (0.0, 0.0)


def test_sweep_with_an_order_and_posterior_ranges():
    model = _model()
    start = traversal.start_from_prior(model, expert=0, seed=1)
    values = np.linspace(-3, 3, 4)
    order = [("z0", 2), ("z0", 0)]
    ranges = {"z0": [(-1.0, 1.0), (0.0, 0.0), (0.5, 2.0)]}
    imgs, labels = traversal.sweep(model, start, values, order=order, ranges=ranges)
    assert labels == ["z0[2]", "z0[0]"] and imgs.shape == (8, 1, 28, 28)
    # row 0 moves z0[2] from 0.5 to 2.0 with the rest at the start
    z = torch.tensor(start.codes["z0"]).repeat(4, 1)
    z[:, 2] = torch.linspace(0.5, 2.0, 4)
    assert torch.allclose(imgs[:4], model.decode({"z0": z}, 0), atol=1e-6)


def _eager_pixels(model, codes, expert):
    return images.upscale(traversal.decode(model, codes, expert)[0], 1).astype(int)


@pytest.mark.parametrize("family", sorted(REGISTRY))
def test_live_decoder_is_traced_and_decodes_as_eager_decode(family):
    """The slider panel's traced decoder gives decode()'s image (as uint8 pixels, at most one
    grey level apart) for every family and expert, for the start code and a moved one, and
    follows weights that change afterwards."""
    torch.manual_seed(0)
    tasks = ["digits:classes=0-4", "digits:classes=5-9"]
    model = build(family, build_config(family, tasks, {})).eval()
    for expert in model.experts() or [None]:
        start = traversal.start_from_prior(model, expert, seed=1)
        live = traversal.live_decoder(model, start.codes, expert)
        assert getattr(live, "traced", False), f"{family}: fell back to eager decoding"
        moved = {
            n: [v + 0.7 * (i == 0) for i, v in enumerate(vals)] for n, vals in start.codes.items()
        }
        for codes in (start.codes, moved):
            px, want = live(codes).astype(int), _eager_pixels(model, codes, expert)
            assert px.shape == want.shape and np.abs(px - want).max() <= 1
        assert not np.array_equal(live(start.codes), live(moved))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    live = traversal.live_decoder(model, start.codes, expert)
    diff = live(start.codes).astype(int) - _eager_pixels(model, start.codes, expert)
    assert np.abs(diff).max() <= 1
