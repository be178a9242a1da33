"""AppTest of the Latent map page (issue 18): the time-lapse's first paint from the projection
`eval --metrics drift --write` stored, the play button's frames, a browser's click decoded
through the clicked frame's snapshot, other spaces and the training images computed off the
script thread, the drift matrix, and the CSV / HTML / GIF exports.

AppTest runs no browser: the map is a custom component whose JSON args are read from its
proto (its points from the file it names), and a click is played by setting the component's
value (session_state["lm_map"]) before a rerun, as Streamlit does when the page calls
setComponentValue. tests/e2e/test_browser_latent_map.py drives the real thing.
"""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pytest

from lifelong import evaldata, runs
from lifelong.explore import timelapse
from tests.app.conftest import APP


@pytest.fixture(scope="module")
def lm_root(tiny_run, tmp_path_factory):
    """<tmp>/maps/tiny (the drift and its time-lapse stored), <tmp>/maps/plain (neither) and
    <tmp>/maps/corrupt (plain with snapshot 1 altered in place)."""
    from lifelong.__main__ import main

    root = tmp_path_factory.mktemp("lm") / "maps"
    shutil.copytree(tiny_run, root / "tiny")
    shutil.copytree(tiny_run, root / "plain")
    shutil.copytree(tiny_run, root / "corrupt")
    snap = root / "corrupt" / "task-01.safetensors"
    data = bytearray(snap.read_bytes())
    data[-64:] = bytes(64)  # same size, other bytes: only the checksum notices
    snap.write_bytes(bytes(data))
    assert main(["eval", str(root / "tiny"), "--metrics", "drift", "--write"]) == 0
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    import latentmap_panel

    folder = tmp_path / ".cache"
    monkeypatch.setattr(latentmap_panel, "CACHE", folder)
    return folder


@pytest.fixture
def page(lm_root, cache, media, v2_navigation, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(lm_root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.selectbox(key="run_label").set_value("maps/tiny").run()
    at.switch_page("views/latent_map.py").run()
    assert not at.exception, at.exception
    return at


def args(at) -> dict:
    (comp,) = at.get("component_instance")
    assert comp.proto.component_name.endswith("timelapse_map")
    return json.loads(comp.proto.json_args)


def xy(at, cache) -> np.ndarray:
    """The points the page fetches: [S, N, 2] from the packed file."""
    a = args(at)
    blob = (cache / a["data"].split("/", 1)[1]).read_bytes()
    off, count = a["layout"]["xy"]
    return np.frombuffer(blob, "<f4", count, off).reshape(a["s"], a["n"], 2)


def captions(at) -> list[str]:
    return [c for im in at.get("image") for c in im.captions]


def wait_for_the_time_lapse(at, frames: int) -> None:
    deadline = time.time() + 120
    while args(at)["s"] != frames and time.time() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception


def test_first_paint_reads_the_stored_time_lapse(page, lm_root, cache):
    run = runs.open_run(lm_root / "tiny")
    tests, _ = evaldata.test_sets(run)
    stored = timelapse.stored(run, tests, "task expert")
    a = args(page)
    assert a["n"] == len(stored) == sum(len(t) for t in tests) and a["s"] == 2
    assert a["frames"] == [f"after task {k}: {t}" for k, t in enumerate(run.tasks)]
    assert a["frame"] == 1  # the sidebar's snapshot: the last
    assert np.array_equal(xy(page, cache), stored.xy.numpy())
    assert not any("time-lapse of" in c.value for c in page.caption)  # nothing was computed
    assert [g["name"] for g in a["groups"]] == [f"{j}: {t}" for j, t in enumerate(run.tasks)]
    assert len(a["atlas"]["urls"]) == -(-a["n"] // a["atlas"]["per_page"])
    # the drift matrix beside it: task 0 did not move (its expert is frozen)
    (table,) = [m.value for m in page.markdown if "lm-drift" in m.value]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    assert cells == ["0", "", "0", "0"]  # [after k][task j]; task 1 not learnt after task 0
    assert any(c.startswith("point 0: task 0") for c in captions(page))
    assert {"CSV", "HTML", "GIF"} <= {b.label for b in page.get("download_button")}


def test_the_play_buttons_frames_follow_the_sidebar_snapshot(page):
    assert args(page)["s"] == 2 and args(page)["frame"] == 1
    page.sidebar.select_slider[0].set_value(0).run()
    assert not page.exception
    a = args(page)
    assert a["s"] == 2 and a["frame"] == 0  # the same time-lapse, shown at snapshot 0
    for colour in ("class", "expert"):
        page.selectbox(key="lm_colour").set_value(colour).run()
        assert not page.exception
        a = args(page)
        assert a["g"] == (2 if colour == "expert" else 1) and a["groups"]


def test_a_click_decodes_the_point_through_its_frames_snapshot(page):
    state = args(page)["state"]
    page.session_state["lm_map"] = {"state": state, "point": 7, "frame": 0}
    page.run()
    assert not page.exception
    assert page.number_input(key="lm_point").value == 7
    assert any(c.startswith("point 7:") and c.endswith("after task 0") for c in captions(page))
    assert args(page)["selected"] == 7
    # a value from another map (stale) is ignored
    page.session_state["lm_map"] = {"state": "other", "point": 3, "frame": 1}
    page.run()
    assert page.number_input(key="lm_point").value == 7


def test_another_space_is_computed_in_the_background(page, lm_root, cache):
    page.selectbox(key="lm_space").set_value("routed").run()
    assert not page.exception
    if args(page)["s"] == 1:  # meanwhile: the snapshot's own stored map, one frame
        assert any("time-lapse of" in c.value for c in page.caption)
    wait_for_the_time_lapse(page, 2)
    run = runs.open_run(lm_root / "tiny")
    tests, _ = evaldata.test_sets(run)
    expected = timelapse.compute(lm_root / "tiny", tests, "routed", "PCA")
    assert np.allclose(xy(page, cache), expected.xy.numpy(), atol=1e-5)


def test_a_run_without_a_stored_time_lapse_shows_its_snapshot_map_first(page, lm_root, cache):
    page.selectbox(key="run_label").set_value("maps/plain").run()
    assert not page.exception
    a = args(page)
    if a["s"] == 1:
        stored = runs.open_run(lm_root / "plain").extra("map", 1)
        assert np.allclose(xy(page, cache)[0], stored["xy"].numpy())
    wait_for_the_time_lapse(page, 2)
    assert not page.exception and any("lm-drift" in m.value for m in page.markdown)


def test_a_damaged_snapshot_is_a_message_not_a_traceback(page):
    page.selectbox(key="run_label").set_value("maps/corrupt").run()
    page.sidebar.select_slider[0].set_value(0).run()  # snapshot 0 loads; 1 does not
    assert not page.exception, page.exception
    deadline = time.time() + 120
    while not page.error and time.time() < deadline:  # the time-lapse reads snapshot 1
        time.sleep(0.5)
        page.run()
        assert not page.exception, page.exception
    assert any("checksum" in e.value for e in page.error), [e.value for e in page.error]


def test_training_images_are_added_on_request(page):
    n_test = args(page)["n"]
    page.selectbox(key="lm_split").set_value("test + train").run()
    assert not page.exception
    deadline = time.time() + 120
    while args(page)["n"] == n_test or args(page)["s"] != 2:
        assert time.time() < deadline
        time.sleep(0.5)
        page.run()
        assert not page.exception
    assert args(page)["n"] > 3 * n_test


def test_exports_open_offline(page, lm_root):
    import latentmap_panel

    run = runs.open_run(lm_root / "tiny")
    tests, _ = evaldata.test_sets(run)
    tl = timelapse.stored(run, tests, "task expert")
    html = latentmap_panel.html(tl, tests, run, "task", 1)
    assert "window.LATENT_MAP" in html and "gl.drawArrays" in html  # the map's own script
    assert not re.search(
        r"<script[^>]*\bsrc=|(src|href)=[\"']?(https?:)?//", html
    )  # nothing fetched
    data = json.loads(html.split("window.LATENT_MAP = ", 1)[1].split(";</script>", 1)[0])
    assert data["n"] == len(tl) and data["atlas"]["urls"][0].startswith("data:image/png")
    gif = latentmap_panel.gif(tl, tests, run, "task")
    from io import BytesIO

    from PIL import Image

    im = Image.open(BytesIO(gif))
    assert gif[:6] == b"GIF89a" and im.n_frames == 2 + 7 and len(gif) < 2_000_000


def groups_of(at, cache) -> np.ndarray:
    """Each point's group (colour) row(s) from the packed file: [G, N]."""
    a = args(at)
    blob = (cache / a["data"].split("/", 1)[1]).read_bytes()
    off, count = a["layout"]["group"]
    return np.frombuffer(blob, "<u2", count, off).reshape(a["g"], a["n"])


def test_colour_by_position_along_a_direction(page, lm_root, cache):
    """Each point coloured by its code's projection onto the direction between two classes'
    mean codes (issue 18 part 3), at the sidebar's snapshot, as a continuous scale; the
    traversal page slides along the same direction."""
    import direction_panel
    from lifelong.explore import directions

    page.selectbox(key="lm_colour").set_value("direction").run()
    assert not page.exception, page.exception
    assert page.radio(key="lm_dir_by").value == "class"
    assert (page.selectbox(key="lm_dir_from").value, page.selectbox(key="lm_dir_to").value) == (
        "0",
        "1",
    )
    expert = page.selectbox(key="lm_dir_expert").value
    a = args(page)
    assert (
        a["scale"]["title"] == f"t from 0 (0) to 1 (1), expert {expert}'s z{expert}, after task 1"
    )
    assert (a["scale"]["lo"], a["scale"]["hi"]) == directions.T_RANGE
    assert len(a["groups"]) == direction_panel.BINS and a["g"] == 1
    assert a["groups"][0]["color"] == "#440154" and a["groups"][-1]["color"] == "#fde725"
    # the colours are the bins of each point's t, computed here independently
    run = runs.open_run(lm_root / "tiny")
    tests, _ = evaldata.test_sets(run)
    tl = timelapse.stored(run, tests, "task expert")
    model = run.load_model(1)
    d = directions.between(
        model,
        directions.group_images(tests, "class", "0"),
        directions.group_images(tests, "class", "1"),
        expert,
    )
    t = directions.point_positions(model, tests, tl.task, tl.index, d)
    _, want = directions.binned(t, *directions.T_RANGE, direction_panel.BINS)
    assert np.array_equal(groups_of(page, cache), want.numpy())
    zeros, ones = (tl.task == 0) & (tl.label == 0), (tl.task == 0) & (tl.label == 1)
    assert float(t[zeros].mean()) == pytest.approx(0, abs=1e-4)
    assert float(t[ones].mean()) == pytest.approx(1, abs=1e-4)
    # the traversal page follows the map's direction, and back
    page.selectbox(key="lm_dir_to").set_value("7").run()
    page.switch_page("views/traversal.py").run()
    assert not page.exception, page.exception
    assert page.selectbox(key="tv_dir_to").value == "7"
    page.selectbox(key="tv_dir_from").set_value("3").run()
    page.switch_page("views/latent_map.py").run()
    page.selectbox(key="lm_colour").set_value("direction").run()  # page widgets start afresh
    assert page.selectbox(key="lm_dir_from").value == "3"
    assert "t from 3 (0) to 7 (1)" in args(page)["scale"]["title"]
    # the exports carry the scale
    import latentmap_panel

    names, group = directions.binned(t, *directions.T_RANGE, direction_panel.BINS)
    colors = direction_panel.scale_colours(direction_panel.BINS)
    scale = dict(names=names, group=group, colors=colors, title="t", lo=-0.5, hi=1.5)
    html = latentmap_panel.html(tl, tests, run, "task", 1, scale=scale)
    data = json.loads(html.split("window.LATENT_MAP = ", 1)[1].split(";</script>", 1)[0])
    assert data["scale"] == {"title": "t", "lo": -0.5, "hi": 1.5}
    assert [g["color"] for g in data["groups"]] == colors
    assert latentmap_panel.gif(tl, tests, run, "task", scale)[:6] == b"GIF89a"


def test_a_zero_direction_leaves_the_map_in_task_colours(page):
    page.selectbox(key="lm_colour").set_value("direction").run()
    page.selectbox(key="lm_dir_to").set_value("0").run()
    assert not page.exception
    (info,) = [i.value for i in page.info]
    assert info.startswith("0 and 0 have the same mean code") and "no direction" in info
    a = args(page)
    assert "scale" not in a and a["groups"][0]["name"].startswith("0: ")
