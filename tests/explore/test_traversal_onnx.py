"""The traversal decoder exported to ONNX for the in-browser panel (issue 19): every family's
graph gives the server's pixels (onnxruntime, the same runtime the page runs as wasm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.explore import images, traversal, traversal_onnx
from lifelong.models import REGISTRY, build
from lifelong.models.vae import VAEConfig
from lifelong.train.trainer import build_config

pytest.importorskip("onnxruntime")
TASKS = ["digits:classes=0-4", "digits:classes=5-9"]


# LGM's z_d starts with one category and grows by one per task: start it at three, so its
# selector has a choice to make
OVERRIDES = {"lgm": {"discrete_dim": 3}}


def _model(family: str):
    torch.manual_seed(0)
    return build(family, build_config(family, TASKS, OVERRIDES.get(family, {}))).eval()


def _server_pixels(model, codes, expert) -> np.ndarray:
    """What the server shows for `codes`: decode, then images.upscale's uint8 conversion."""
    return images.upscale(traversal.decode(model, codes, expert)[0], 1).astype(int)


def _flat(codes, names) -> torch.Tensor:
    return torch.tensor([[v for n in names for v in codes[n]]], dtype=torch.float32)


def _codes_to_check(model, start_codes, seed=0):
    """The start, every variable of it moved, random codes in the sliders' range, and every
    category of each categorical block (the panel's selector)."""
    kinds = {b.name: b.kind for b in model.latent_blocks()}
    g = torch.Generator().manual_seed(seed)
    out = [start_codes]
    for _ in range(4):
        codes = {}
        for n, v in start_codes.items():
            if kinds[n] == "categorical":
                codes[n] = [0.0] * len(v)
                codes[n][int(torch.randint(len(v), (), generator=g))] = 1.0
            else:
                codes[n] = (torch.rand(len(v), generator=g) * 6 - 3).tolist()
        out.append(codes)
    for n, v in start_codes.items():
        if kinds[n] == "categorical":
            for k in range(len(v)):
                out.append({**start_codes, n: [float(j == k) for j in range(len(v))]})
    return out


@pytest.mark.parametrize("family", sorted(REGISTRY))
def test_every_family_exports_a_graph_that_decodes_as_the_server(family):
    model = _model(family)
    kinds = {b.name: b.kind for b in model.latent_blocks()}
    for expert in model.experts() or [None]:
        start = traversal.start_from_prior(model, expert, seed=1)
        codes0 = traversal.panel_codes(model, start)
        names = list(codes0)
        ex = traversal_onnx.export(model, names, [len(v) for v in codes0.values()], expert)
        assert ex.max_diff is not None and ex.max_diff <= 1, (family, expert, ex.max_diff)
        assert ex.shape == list(_server_pixels(model, codes0, expert).shape)
        checks = _codes_to_check(model, codes0)
        got = traversal_onnx.run_onnx(ex.onnx, [_flat(c, names) for c in checks])
        for codes, pixels in zip(checks, got, strict=True):
            assert pixels.dtype == np.uint8
            want = _server_pixels(model, codes, expert)
            diff = np.abs(pixels.astype(int) - want)
            # float32 in another runtime: a pixel may round the other way at .5, no more
            assert diff.max() <= 1, (family, expert, codes)
            assert (diff == 0).mean() >= 0.99, (family, expert, (diff > 0).sum())
        distinct = {p.tobytes() for p in got}
        assert len(distinct) > 1, f"{family}: the graph ignores its input"
        for name, kind in kinds.items():
            if kind == "categorical" and name in codes0:  # the selector changes the image
                per_category = got[len(got) - len(codes0[name]) :]
                assert len({p.tobytes() for p in per_category}) > 1, (family, name)


def test_mixture_experts_get_their_own_graph():
    model = _model("lmvae")
    exported = {}
    for expert in model.experts():
        codes0 = traversal.panel_codes(model, traversal.start_from_prior(model, expert, 0))
        exported[expert] = traversal_onnx.cached_export(model, codes0, expert)
    assert len({e.sha256 for e in exported.values()}) == len(model.experts())
    z = torch.zeros(1, sum(exported[0].dims))
    outs = [traversal_onnx.run_onnx(e.onnx, [z])[0] for e in exported.values()]
    assert not np.array_equal(outs[0], outs[1])


def test_rgb_images_come_out_height_width_channels():
    torch.manual_seed(0)
    model = build("vae", VAEConfig(image_shape=(3, 32, 32), latent_dim=3)).eval()
    codes0 = traversal.panel_codes(model, traversal.start_from_prior(model, None, 2))
    ex = traversal_onnx.export(model, ["z"], [3], None)
    assert ex.shape == [32, 32, 3] and ex.max_diff <= 1
    (pixels,) = traversal_onnx.run_onnx(ex.onnx, [_flat(codes0, ["z"])])
    assert np.abs(pixels.astype(int) - _server_pixels(model, codes0, None)).max() <= 1


def test_a_decoder_the_graph_cannot_follow_is_refused():
    """A decode that leaves the tensor world (here through .tolist()) traces to a graph that
    ignores its input: the check against the server's decode catches it, in one line."""
    model = _model("vae")
    real = model.decode

    def python_side(codes, expert=None):
        z = codes["z"]
        return real({"z": 0 * z + torch.tensor(z.tolist())})  # .tolist(): a constant in a trace

    model.decode = python_side
    with pytest.raises(traversal_onnx.ExportError, match="grey levels from the server"):
        traversal_onnx.export(model, ["z"], [model.config.latent_dim], None)


def test_an_exporter_failure_is_an_export_error(monkeypatch):
    model = _model("vae")

    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(traversal_onnx.ExportError) as info:
        traversal_onnx.export(model, ["z"], [model.config.latent_dim], None)
    assert "could not be exported" in str(info.value) and "\n" not in str(info.value)
    # cached: a family that cannot be exported is not retried on every rerun
    codes = {"z": [0.0] * model.config.latent_dim}
    with pytest.raises(traversal_onnx.ExportError):
        traversal_onnx.cached_export(model, codes, None)
    monkeypatch.undo()
    with pytest.raises(traversal_onnx.ExportError):
        traversal_onnx.cached_export(model, codes, None)


def test_cached_export_follows_weights_that_change():
    model = _model("vae")
    codes = {"z": [0.5] * model.config.latent_dim}
    first = traversal_onnx.cached_export(model, codes, None)
    assert traversal_onnx.cached_export(model, codes, None) is first
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    second = traversal_onnx.cached_export(model, codes, None)
    assert second.sha256 != first.sha256
    (pixels,) = traversal_onnx.run_onnx(second.onnx, [_flat(codes, ["z"])])
    assert np.abs(pixels.astype(int) - _server_pixels(model, codes, None)).max() <= 1


def test_panel_codes_clip_and_pick_the_most_probable_category():
    model = _model("lgm")
    zd = [0.1] * (model.discrete_dim - 1) + [0.9]
    zc = [5.0, -7.0] + [0.1] * (model.config.latent_dim - 2)
    codes = traversal.panel_codes(model, traversal.Start(None, {"zd": zd, "zc": zc}))
    assert codes["zc"][:3] == [3.0, -3.0, pytest.approx(0.1)]
    assert codes["zd"] == [0.0] * (model.discrete_dim - 1) + [1.0]


def test_values_from_a_browser_are_checked():
    template = {"c": [0.0, 0.0], "d": [1.0, 0.0, 0.0]}
    kinds = {"c": "gaussian", "d": "categorical"}
    ok = traversal.checked_values({"c": [0.5, 9], "d": [0, 1, 0]}, template, kinds)
    assert ok == {"c": [0.5, 3.0], "d": [0.0, 1.0, 0.0]}
    for bad in (
        None,
        "c",
        {"c": [0.5, 0.1]},  # a block missing
        {"c": [0.5], "d": [1, 0, 0]},  # wrong size
        {"c": [0.5, float("nan")], "d": [1, 0, 0]},
        {"c": [0.5, "1"], "d": [1, 0, 0]},
        {"c": [0.5, True], "d": [1, 0, 0]},
        {"c": [0.5, 0.1], "d": [0.5, 0.5, 0]},  # not one-hot
        {"c": [0.5, 0.1], "d": [1, 0, 0], "x": [1]},
    ):
        assert traversal.checked_values(bad, template, kinds) is None, bad
