"""The Latent map's time-lapse (issue 18): one projection for every snapshot (a point moves only
where its code moved, for PCA and for t-SNE / UMAP placed by `transform`), the codes of each
task's expert, the packed points the page fetches, the hover images' pages, the GIF."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong import embedding
from lifelong.explore import timelapse
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task


def drifting_codes(seed: int = 0):
    """Three snapshots of 120 codes: task 0's (rows 0-59) never move, task 1's move."""
    rng = np.random.default_rng(seed)
    first = np.concatenate([rng.normal(0, 1, (60, 4)), rng.normal(5, 1, (60, 4))])
    later = [first.copy()]
    for k in (1, 2):
        moved = later[-1].copy()
        moved[60:] += rng.normal(0, 1, (60, 4)) + k
        later.append(moved)
    return [c.astype(np.float32) for c in later]


def test_pca_is_fitted_once_so_unmoved_codes_stand_still():
    codes = drifting_codes()
    xy = embedding.fit_over_snapshots(codes, "PCA")
    assert xy.shape == (3, 120, 2) and xy.dtype == np.float32
    assert (xy[0, :60] == xy[1, :60]).all() and (xy[1, :60] == xy[2, :60]).all()
    assert np.abs(xy[2, 60:] - xy[0, 60:]).max() > 0.5
    # a linear map: distances between snapshots are those of the codes projected on 2 axes
    again = embedding.fit_over_snapshots([c * 1.0 for c in codes], "PCA")
    assert np.array_equal(xy, again)
    # one-dimensional codes get a zero second axis; a snapshot with fewer columns is padded
    flat = embedding.fit_over_snapshots([codes[0][:, :1], codes[1][:, :1]], "PCA")
    assert flat.shape == (2, 120, 2) and (flat[..., 1] == 0).all()
    assert embedding.fit_over_snapshots([codes[0][:, :3], codes[1]], "PCA").shape == (2, 120, 2)


@pytest.mark.parametrize("method", ["t-SNE", pytest.param("UMAP", marks=pytest.mark.slow)])
def test_nonlinear_maps_place_earlier_codes_into_the_last_snapshots_map(method):
    pytest.importorskip("openTSNE" if method == "t-SNE" else "umap")
    codes = drifting_codes()
    xy = embedding.fit_over_snapshots(codes, method, fit_points=100)
    assert xy.shape == (3, 120, 2) and np.isfinite(xy).all()
    # task 0's codes never moved: exactly where the last snapshot put them, in every frame
    assert (xy[0, :60] == xy[2, :60]).all() and (xy[1, :60] == xy[2, :60]).all()
    # the 20 codes left out of the fit were placed near their cluster (of the last frame)
    centre = xy[2, 60:].mean(0)
    assert (
        np.linalg.norm(xy[2, 60:] - centre, axis=1).mean()
        < np.linalg.norm(xy[2, :60] - centre, axis=1).mean()
    )


def test_codes_of_each_tasks_expert():
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4)).eval()
    tests = [synthetic_task("hbar", 20), synthetic_task("vbar", 30, seed=1)]
    points = embedding.every_point(tests)
    assert points["task"].tolist() == [0] * 20 + [1] * 30 and points["index"][25] == 5
    codes, expert = embedding.codes_of(model, tests, points, embedding.TASK_EXPERT, batch=7)
    for j, data in enumerate(tests):
        k = embedding.task_expert(model, j, data.x)
        rows = points["task"] == j
        assert (expert[rows.numpy()] == k).all()
        mu = model.encode(data.x, k)[f"z{k}"]["mu"].detach().numpy()
        assert np.allclose(codes[rows.numpy()], mu, atol=1e-6)
    routed, who = embedding.codes_of(model, tests, points, "routed")
    assert torch.equal(torch.from_numpy(who), model.select(embedding.images_of(tests, points)))
    assert embedding.drift_space(model) == embedding.TASK_EXPERT


def small_timelapse():
    tests = [synthetic_task("hbar", 10), synthetic_task("vbar", 6, seed=1)]
    points = embedding.every_point(tests)
    rng = np.random.default_rng(1)
    codes = [rng.normal(size=(16, 3)).astype(np.float32)]
    codes.append(codes[0] + np.float32(0.5))
    experts = [np.zeros(16, int), np.where(points["task"].numpy() == 0, 0, 1)]
    tl = timelapse.from_codes(points, codes, experts, [0, 1], 2, "task expert", "PCA")
    return tl, tests


def test_payload_the_page_reads():
    tl, tests = small_timelapse()
    names, group = timelapse.groups(tl, "expert", tests, ["hbar", "vbar"])
    assert names == ["expert 0", "expert 1"] and group.shape == (2, 16)
    assert group[1, 12] == 1 and group[0, 12] == 0
    blob, layout = timelapse.payload(tl, group)
    off, count = layout["xy"]
    xy = np.frombuffer(blob, "<f4", count, off).reshape(2, 16, 2)
    assert np.array_equal(xy, tl.xy.numpy())
    off, count = layout["task"]
    assert np.frombuffer(blob, "<u2", count, off).tolist() == tl.task.tolist()
    assert all(o % 4 == 0 for o, _ in layout.values())  # typed arrays need aligned offsets
    names, group = timelapse.groups(tl, "task", tests, ["hbar", "vbar"])
    assert names == ["0: hbar", "1: vbar"] and group.tolist() == [tl.task.tolist()]
    assert tl.drift[1][0] is not None and tl.drift[0][1] is None and tl.frame(1) == 1


def test_atlas_pages_hold_each_points_image_in_order():
    tl, tests = small_timelapse()
    pages = list(timelapse.atlas_pages(tests, tl.task, tl.index, per_page=9))
    assert [cols for cols, _ in pages] == [3, 3]
    page = np.asarray(Image.open(io.BytesIO(pages[1][1])))
    assert page.shape == (3 * 28, 3 * 28)
    # point 13 (task 1, image 3) is the second page's tile 4: row 1, column 1
    assert (tl.task[13], tl.index[13]) == (1, 3)
    expect = (tests[1].x[3, 0] * 255).round().numpy()
    assert np.abs(page[28:56, 28:56].astype(float) - expect).max() <= 1


def test_gif_holds_every_snapshot_and_the_steps_between():
    tl, tests = small_timelapse()
    names, group = timelapse.groups(tl, "task", tests, ["hbar", "vbar"])
    gif = timelapse.gif(tl, group, [(200, 0, 0), (0, 0, 200)], ["after 0", "after 1"], steps=4)
    im = Image.open(io.BytesIO(gif))
    assert im.n_frames == 2 + 3 and im.info["loop"] == 0
    im.seek(0)
    colours = {c for _, c in im.convert("RGB").getcolors(10_000)}
    assert (200, 0, 0) in colours and (0, 0, 200) in colours
