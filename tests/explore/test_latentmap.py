"""Latent map computations and the default map stored beside each snapshot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong import embedding
from lifelong.data import load_task
from lifelong.explore import latentmap
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.runs import RunError, open_run
from tests.conftest import synthetic_task


def _model():
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4)).eval()


def test_sample_is_even_over_tasks_and_deterministic():
    tests = [synthetic_task("hbar", 40), synthetic_task("vbar", 30, seed=1)]
    a = latentmap.sample(tests, n_points=20, seed=3)
    b = latentmap.sample(tests, n_points=20, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["task"].tolist() == [0] * 10 + [1] * 10
    x = latentmap.images_of(tests, a)
    assert torch.equal(x[12], tests[1].x[a["index"][12]])


def test_routed_codes_come_from_the_selected_expert():
    model = _model()
    x = torch.cat([synthetic_task("hbar", 8).x, synthetic_task("vbar", 8, seed=1).x])
    codes, expert = latentmap.encode(model, x, "routed", batch=5)
    assert codes.shape == (16, 3) and torch.equal(torch.from_numpy(expert), model.select(x))
    for i in (0, 9):
        k = int(expert[i])
        mu = model.encode(x[i : i + 1], k)[f"z{k}"]["mu"][0].detach()
        assert np.allclose(codes[i], mu.numpy(), atol=1e-6)
    one, who = latentmap.encode(model, x, "expert 1")
    assert (who == 1).all() and np.allclose(
        one, model.encode(x, 1)["z1"]["mu"].detach().numpy(), atol=1e-6
    )
    assert latentmap.spaces(model) == ["task expert", "routed", "expert 0", "expert 1"]


def test_projections():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(200, 5)) * np.array([5.0, 1.0, 0.1, 0.1, 0.1])
    xy = latentmap.project(codes, "PCA")
    assert xy.shape == (200, 2)
    # the first axis is the direction of largest variance
    assert abs(np.corrcoef(xy[:, 0], codes[:, 0])[0, 1]) > 0.99
    assert xy[:, 0].var() > xy[:, 1].var()
    assert latentmap.project(codes[:, :1], "PCA").shape == (200, 2)
    assert latentmap.project(codes[:60], "t-SNE").shape == (60, 2)
    with pytest.raises(ValueError, match="valid: PCA, t-SNE, UMAP"):
        latentmap.project(codes, "MDS")


def test_default_map_is_stored_beside_each_snapshot(tiny_run, tmp_path):
    import shutil

    run = open_run(tiny_run)
    for k in run.snapshots:
        m = run.extra("map", k)
        assert m["xy"].shape == (len(m["task"]), 2) and set(m["task"].tolist()) == {0, 1}
        assert (m["expert"] >= 0).all()
    # stored compact (embedding.stored_map): the same points as the page's map, in fewer bytes
    model, tests = run.load_model(run.snapshots[-1]), [load_task(t, "test") for t in run.tasks]
    full = latentmap.default_map(model, tests)
    assert m["xy"].dtype == torch.float16 and m["index"].dtype == torch.int32
    assert torch.equal(m["index"].long(), full["index"]) and torch.equal(
        m["task"].long(), full["task"]
    )
    assert torch.allclose(m["xy"].float(), full["xy"].float(), rtol=1e-3, atol=1e-3)
    assert embedding.compact_xy(torch.full((2, 2), 1e5)).dtype == torch.float32  # out of range
    assert run.extra("nothing", 0) is None
    bad = shutil.copytree(tiny_run, tmp_path / "bad")
    f = bad / "map-01.safetensors"
    f.write_bytes(f.read_bytes()[:-8] + bytes(8))
    with pytest.raises(RunError, match="map-01.safetensors is corrupt"):
        open_run(bad).extra("map", 1)


@pytest.mark.slow
def test_umap_projection():
    pytest.importorskip("umap")
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(8, 1, (40, 4))])
    xy = latentmap.project(codes, "UMAP")
    assert xy.shape == (80, 2)
    # two far-apart clusters stay apart: every point is nearer its own cluster's centre
    centres = np.stack([xy[:40].mean(0), xy[40:].mean(0)])
    nearest = np.linalg.norm(xy[:, None] - centres[None], axis=2).argmin(1)
    assert (nearest == np.repeat([0, 1], 40)).all()
