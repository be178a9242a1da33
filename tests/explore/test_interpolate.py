"""Interpolation paths, strips through experts, and the conversion of uploaded images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong.explore import interpolate
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task


def _model():
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4)).eval()


def test_linear_and_spherical_paths_join_the_endpoints():
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    lin = interpolate.path(z0, z1, 5)
    assert torch.allclose(lin[0], z0) and torch.allclose(lin[-1], z1)
    assert torch.allclose(lin[2], (z0 + z1) / 2)
    sl = interpolate.path(z0, z1, 5, "slerp")
    assert torch.allclose(sl[0], z0, atol=1e-6) and torch.allclose(sl[-1], z1, atol=1e-6)
    # the spherical path's midpoint lies at 45 degrees with the interpolated norm 1.5
    assert torch.allclose(sl[2], torch.tensor([1.5, 1.5]) / 2**0.5, atol=1e-6)
    with pytest.raises(ValueError, match="valid: linear, slerp"):
        interpolate.path(z0, z1, 3, "cubic")


def test_strip_through_one_expert_ends_at_the_reconstructions():
    model = _model()
    x0, x1 = synthetic_task("hbar", 1).x, synthetic_task("vbar", 1, seed=1).x
    k = interpolate.pair_expert(model, x0, x1)
    s = interpolate.strip(model, x0, x1, steps=6, encoder=k, decoder=k)
    assert s.shape == (6, 1, 28, 28)
    assert torch.allclose(s[0], model.reconstruct(x0, expert=k)[0], atol=1e-6)
    assert torch.allclose(s[-1], model.reconstruct(x1, expert=k)[0], atol=1e-6)
    mis = interpolate.strip(model, x0, x1, steps=6, encoder=k, decoder=1 - k)
    assert not torch.allclose(mis, s)  # eq. 36: another decoder reads the same codes


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_of_any_size_and_mode_is_converted_and_explained():
    rgba = np.zeros((60, 90, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[20:40, 40:50, :3] = 255  # a light bar on an opaque black background
    x, steps = interpolate.from_upload(_png(rgba, "RGBA"), (1, 28, 28))
    assert x.shape == (1, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert steps[0] == "read PNG 90x60 RGBA"
    assert "centre-cropped to 60x60" in steps and "resized to 28x28" in steps
    assert not any("inverted" in s for s in steps)
    # dark ink on white paper is inverted to light on dark, like the embedded data
    paper = np.full((28, 28), 255, np.uint8)
    paper[10:18, 10:18] = 0
    y, steps = interpolate.from_upload(_png(paper, "L"), (1, 28, 28))
    assert "inverted (light background)" in steps and y[0, 0, 14, 14] == 1 and y[0, 0, 0, 0] == 0
    rgb, steps = interpolate.from_upload(_png(paper, "L"), (3, 28, 28))
    assert rgb.shape == (1, 3, 28, 28) and "converted to RGB" in steps


def test_bad_uploads_get_one_line_errors():
    with pytest.raises(interpolate.InputError, match="not a readable image"):
        interpolate.from_upload(b"GIF89a not really", (1, 28, 28))
    with pytest.raises(interpolate.InputError, match="limit is 10 MB"):
        interpolate.from_upload(b"0" * (11 * 2**20), (1, 28, 28))


def _file(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_16_bit_and_float_uploads_are_scaled_by_their_range():
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))  # mean 0.5
    uploads = {
        "I;16": _file(Image.fromarray(ramp), "PNG"),
        "I;16B": _file(Image.fromarray(ramp.astype(">u2")), "TIFF"),
        "F": _file(Image.fromarray(ramp.astype(np.float32) / 65535), "TIFF"),
    }
    for mode, data in uploads.items():
        for c in (1, 3):
            x, steps = interpolate.from_upload(data, (c, 28, 28))
            assert x.mean().item() == pytest.approx(0.5, abs=0.01), (mode, c)  # was 0.998
            assert f"{mode} values scaled to 8 bits" in steps
            assert x[0, 0, 14, 0] < 0.05 and x[0, 0, 14, -1] > 0.95  # not inverted: dark left
    # LAB (no PIL conversion to grey or RGB) loads through its lightness channel
    lab = _file(Image.new("LAB", (8, 8), (60, 128, 128)), "TIFF")
    x, _ = interpolate.from_upload(lab, (3, 28, 28))
    assert x.mean().item() == pytest.approx(60 / 255, abs=0.01)
