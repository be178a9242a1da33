"""The app's batch work on CUDA (issue 18 part 4; skipped without a device, as the rest of
tests/gpu/): the batch device the app picks there, the pages' batch computations giving the
CPU's results within tolerance, and every page opening with its models on CUDA.

Run on a GPU machine with `python -m pytest -m gpu tests/gpu` (bench/device_check.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong import evaldata, runs
from lifelong.embedding import codes_of, every_point
from lifelong.explore import device, directions, timelapse, traversal

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_auto_picks_cuda_here():
    assert device.batch_device(None) == ("cuda", None)
    assert device.batch_device("cuda", "cpu") == ("cpu", None)


def test_the_pages_batch_work_on_cuda_equals_the_cpus(tiny_run):
    run = runs.open_run(tiny_run)
    tests, _ = evaldata.test_sets(run)
    cpu, gpu = run.load_model(device="cpu"), run.load_model(device="cuda")
    assert gpu.device.type == "cuda"
    # the latent map's codes of every test image (task expert space)
    points = every_point(tests, None)
    a, ea = codes_of(cpu, tests, points, "task expert")
    b, eb = codes_of(gpu, tests, points, "task expert")
    assert np.array_equal(ea, eb) and np.allclose(a, b, atol=1e-4)
    # a direction's means, its swept grid and every point's position along it
    x0, x1 = (directions.group_images(tests, "class", n) for n in ("0", "1"))
    expert = cpu.experts()[0]
    dc, dg = (directions.between(m, x0, x1, expert) for m in (cpu, gpu))
    assert torch.allclose(dc.start, dg.start, atol=1e-4) and torch.allclose(
        dc.end, dg.end, atol=1e-4
    )
    base = traversal.panel_codes(cpu, traversal.start_from_image(cpu, x0[:1], expert))
    ts = np.linspace(*directions.T_RANGE, 9)
    grid_c = directions.decode_along(cpu, dc, base, ts)
    grid_g = directions.decode_along(gpu, dg, base, ts)
    assert grid_g.device.type == "cpu" and torch.allclose(grid_c, grid_g, atol=1e-3)
    task, index = points["task"].long(), points["index"].long()
    pc = directions.point_positions(cpu, tests, task, index, dc)
    pg = directions.point_positions(gpu, tests, task, index, dg)
    assert torch.allclose(pc, pg, atol=1e-3)
    # a traversal's grid of every variable
    start = traversal.start_from_image(cpu, x0[:1], expert)
    sc, _ = traversal.sweep(cpu, start, np.linspace(-3, 3, 7))
    sg, _ = traversal.sweep(gpu, start, np.linspace(-3, 3, 7))
    assert torch.allclose(sc, sg, atol=1e-3)
    # the time-lapse computed off the page on the batch device
    tc = timelapse.compute(tiny_run, tests, "task expert", "PCA", device="cpu")
    tg = timelapse.compute(tiny_run, tests, "task expert", "PCA", device="cuda")
    assert np.allclose(np.abs(tc.xy.numpy()), np.abs(tg.xy.numpy()), atol=1e-3)  # PCA signs


def test_every_page_opens_with_its_models_on_cuda(tiny_run, tmp_path, monkeypatch):
    """The AppTest of every page with LIFELONG_APP_DEVICE=auto on a CUDA machine: the sidebar
    offers the setting, the pages' models are on CUDA and nothing fails on a device mix."""
    from streamlit.testing.v1 import AppTest

    import ui
    from pagelist import RUN_PAGES

    root = tmp_path / "gpu"
    shutil.copytree(tiny_run, root / "tiny")
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(root))
    monkeypatch.setenv(device.ENV, "auto")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    setting = at.sidebar.selectbox(key=ui.DEVICE_KEY)
    assert setting.value == "auto" and list(setting.options) == list(device.CHOICES)
    for page in RUN_PAGES:
        at.switch_page(page.path).run()
        assert not at.exception, (page.path, at.exception)
        assert not at.error, (page.path, [e.value for e in at.error])
    run = runs.open_run(root / "tiny")
    model = ui._model(str(run.path), ui._mtime(run.path), run.snapshots[-1], "cuda")
    assert model.device.type == "cuda"
    # the sidebar's setting moves the batch work back to the CPU
    at.sidebar.selectbox(key=ui.DEVICE_KEY).set_value("cpu").run()
    assert not at.exception
