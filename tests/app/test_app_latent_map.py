"""AppTest of the Latent map page: stored first paint, recomputation off the script thread."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest


def values(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata": base64}."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def chart_xy(at) -> np.ndarray:
    """The plotted points [N, 2] in point order (traces hold them grouped by colour)."""
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    n = sum(len(values(t["customdata"])) for t in spec["data"])
    xy = np.zeros((n, 2))
    for t in spec["data"]:
        idx = values(t["customdata"]).astype(int)
        xy[idx, 0], xy[idx, 1] = values(t["x"]), values(t["y"])
    return xy


@pytest.fixture
def page(app):
    app.switch_page("views/latent_map.py").run()
    assert not app.exception, app.exception
    return app


def test_first_paint_uses_the_stored_map(page, run_roots):
    from lifelong.runs import open_run

    stored = open_run(run_roots["good"]).extra("map", 1)
    assert np.allclose(chart_xy(page), stored["xy"].numpy(), atol=1e-5)
    assert not page.get("status")  # nothing was fitted
    caps = [c for im in page.get("image") for c in im.captions]
    assert any(c.startswith("point 0: task 0") for c in caps)
    assert {"CSV", "HTML"} <= {b.label for b in page.get("download_button")}


def test_colours_and_points(page):
    for colour in ["class", "expert", "task"]:
        page.selectbox(key="lm_colour").set_value(colour).run()
        assert not page.exception
    page.number_input(key="lm_point").set_value(5).run()
    caps = [c for im in page.get("image") for c in im.captions]
    assert any(c.startswith("point 5:") for c in caps)


def test_another_space_is_computed_in_the_background(page, run_roots):
    from lifelong import evaldata, runs
    from lifelong.explore import latentmap

    tests, _ = evaldata.test_sets(runs.open_run(run_roots["good"]))
    page.selectbox(key="lm_space").set_value("expert 1").run()
    assert not page.exception
    deadline = time.time() + 60
    while not page.get("plotly_chart") and time.time() < deadline:
        time.sleep(0.5)
        page.run()
        assert not page.exception
    expected = latentmap.compute(run_roots["good"], 1, "expert 1", "PCA", tests)
    assert np.allclose(chart_xy(page), expected["xy"].numpy(), atol=1e-4)
    stored = latentmap.compute(run_roots["good"], 1, "routed", "PCA", tests)
    assert not np.allclose(chart_xy(page), stored["xy"].numpy(), atol=1e-4)
