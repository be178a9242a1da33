"""AppTest of the Latent traversal page: the in-page panel (its args, the values a browser
sends back, the fallback to the server's sliders), expert choice, the grid and exports.

AppTest runs no browser: the panel is a custom component whose JSON args are read from its
proto, and a browser's message is played by setting the component's widget value
(session_state["tv_panel"]) before a rerun, as Streamlit does when the page calls
setComponentValue. tests/e2e/test_browser_traversal.py drives the real thing.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from lifelong import runs
from lifelong.explore import traversal, traversal_onnx


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The exported graphs go to a temporary folder, not the component's."""
    import traversal_panel

    folder = tmp_path / ".cache"
    monkeypatch.setattr(traversal_panel, "CACHE", folder)
    return folder


@pytest.fixture
def page(app, cache):
    app.switch_page("views/traversal.py").run()
    assert not app.exception, app.exception
    return app


@pytest.fixture(scope="module")
def model(run_roots):
    return runs.open_run(run_roots["good"]).load_model()


def panel(at) -> dict:
    """The panel's render args (what the page's JavaScript receives)."""
    (comp,) = at.get("component_instance")
    assert comp.proto.component_name.endswith("traversal_panel")
    return json.loads(comp.proto.json_args)


def png_pixels(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def decoded(at) -> np.ndarray:
    """The server's decode of the panel's values (shown until the page's first frame)."""
    return png_pixels(panel(at)["image"])


def send(at, **value) -> None:
    """What the page does when a drag ends: the component's value, then a rerun."""
    at.session_state["tv_panel"] = {"state": panel(at)["state"], **value}
    at.run()
    assert not at.exception, at.exception


def moved(values: dict, to: float) -> dict:
    out = {k: list(v) for k, v in values.items()}
    first = next(iter(out))
    out[first][0] = to
    return out


def server_sliders(at):
    return [s for s in at.slider if s.key != "tv_nvalues" and not s.key.startswith("tv_dir")]


def server_image(at) -> np.ndarray:
    (image,) = [im for im in at.get("image") if im.captions == ["decoded"]]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(image.value[0].split(",")[1]))))


def expert_caption(at) -> str:
    (text,) = [c.value for c in at.caption if c.value.startswith("Decoding through expert")]
    return text


def sweep_grid(page):
    (im,) = [im for im in page.get("image") if im.captions[0].startswith("rows, top to bottom")]
    return im


def test_renders_the_panel_with_one_slider_per_latent_variable(page, model, cache):
    assert [t.value for t in page.title] == ["Latent traversal"]
    assert not page.error
    assert not [c for c in page.caption if c.value.startswith("Decoding on the server")]
    expert = int(re.search(r"expert (\d+) \(selected by eq\. 7\)", expert_caption(page))[1])
    args = panel(page)
    blocks = traversal.blocks_for(model, expert)
    assert args["blocks"] == [{"name": b.name, "dim": b.dim, "kind": b.kind} for b in blocks]
    assert sum(b["dim"] for b in args["blocks"]) == 4
    assert args["values"] == args["start"]
    assert all(-3 <= v <= 3 for vals in args["values"].values() for v in vals)
    assert not server_sliders(page)  # the sliders live in the panel
    assert args["shape"] == [28, 28] and decoded(page).shape == (28, 28)
    assert len(args["pad"]) == 2 and all(p[0] == blocks[0].name for p in args["pad"])
    # the page fetches the graph from the component's folder: written there, and it decodes
    # the server's image of the panel's values
    name = args["model"].split("/")[-1]
    assert args["model"] == f"{cache.name}/{name}" and (cache / name).is_file()
    pytest.importorskip("onnxruntime")
    flat = np.array([[v for b in args["blocks"] for v in args["values"][b["name"]]]])
    import torch

    graph = gzip.decompress((cache / name).read_bytes())
    (pixels,) = traversal_onnx.run_onnx(graph, [torch.tensor(flat).float()])
    assert np.abs(pixels.astype(int) - decoded(page).astype(int)).max() <= 1
    captions = [c for im in page.get("image") for c in im.captions]
    assert "input" in captions


def test_values_from_the_browser_move_the_image_and_the_grid(page, media):
    args = panel(page)
    before, grid = decoded(page), media(sweep_grid(page).value[0])
    first = next(iter(args["values"]))
    target = 3.0 if args["values"][first][0] < 0 else -3.0
    send(page, values=moved(args["values"], target))
    after = panel(page)
    assert after["values"][first][0] == target
    assert after["values"][first][1:] == args["values"][first][1:]
    assert after["start"] == args["start"] and after["state"] == args["state"]
    assert after["model"] == args["model"]  # same expert: the page keeps its graph
    assert (decoded(page) != before).any()
    assert (media(sweep_grid(page).value[0]) != grid).any()  # the grid follows the panel


def test_values_for_another_input_or_malformed_ones_are_ignored(page):
    args = panel(page)
    at = page
    at.session_state["tv_panel"] = {"state": "another input", "values": moved(args["values"], 3)}
    at.run()
    assert not at.exception and panel(at)["values"] == args["values"]
    first = next(iter(args["values"]))
    for bad in (
        {first: [1.0]},
        {first: [float("nan")] * 4},
        {first: ["1"] * 4},
        "3",
        None,
    ):
        send(page, values=bad)
        assert panel(page)["values"] == args["values"], bad
        assert not page.error


def test_a_browser_that_cannot_decode_falls_back_to_server_sliders(page):
    values = moved(panel(page)["values"], 2.0)
    send(page, values=values)
    send(page, failed="WebAssembly is not available")
    assert not page.get("component_instance")
    (note,) = [c.value for c in page.caption if c.value.startswith("Decoding on the server")]
    assert "this browser could not run the decoder (WebAssembly is not available)" in note
    sliders = server_sliders(page)
    assert len(sliders) == 4
    assert sliders[0].value == pytest.approx(2.0)  # the panel's values carry over
    before = server_image(page)
    sliders[1].set_value(-3.0 if sliders[1].value > 0 else 3.0).run()
    assert not page.exception
    assert (server_image(page) != before).any()


def test_a_decoder_that_cannot_be_exported_falls_back(app, cache, monkeypatch):
    def refuse(model, codes, expert):
        raise traversal_onnx.ExportError("the decoder could not be exported to ONNX (Foo: bar)")

    monkeypatch.setattr(traversal_onnx, "cached_export", refuse)
    app.switch_page("views/traversal.py").run()
    assert not app.exception and not app.error
    (note,) = [c.value for c in app.caption if c.value.startswith("Decoding on the server")]
    assert note.endswith("the decoder could not be exported to ONNX (Foo: bar).")
    assert len(server_sliders(app)) == 4 and server_image(app).shape[:2] == (28, 28)
    assert not list(cache.glob("*.onnx"))


def test_the_server_can_turn_in_page_decoding_off(app, cache, monkeypatch):
    monkeypatch.setenv("LIFELONG_TRAVERSAL_PANEL", "server")
    app.switch_page("views/traversal.py").run()
    assert not app.exception and not app.get("component_instance")
    (note,) = [c.value for c in app.caption if c.value.startswith("Decoding on the server")]
    assert "turned off on this server (LIFELONG_TRAVERSAL_PANEL=server)" in note
    assert len(server_sliders(app)) == 4 and server_image(app).shape[:2] == (28, 28)


def test_the_address_follows_the_panel(page):
    args = panel(page)
    assert page.query_params["tv"] == "test.0.0.routed"
    assert page.query_params["z"] == traversal.codes_text(args["values"])
    send(page, values=moved(args["values"], 2.5))
    first = next(iter(args["values"]))
    assert page.query_params["z"].startswith(f"{first}:2.5,")
    page.selectbox(key="tv_task").set_value(1).run()
    assert page.query_params["tv"] == "test.1.0.routed"


def test_an_address_opens_its_input_expert_and_values(run_roots, v2_navigation, cache):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    def open_with(**params):
        at = AppTest.from_file(str(APP), default_timeout=60)
        for k, v in params.items():
            at.query_params[k] = v
        at.switch_page("views/traversal.py").run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert not at.warning, [w.value for w in at.warning]  # e.g. a widget's default clash
        return at

    at = open_with(tv="test.1.3.0", z="z0:0.5,-1,2.25,0")
    assert (at.selectbox(key="tv_task").value, at.number_input(key="tv_index").value) == (1, 3)
    assert at.selectbox(key="tv_expert").value == 0
    assert panel(at)["values"] == {"z0": [0.5, -1.0, 2.25, 0.0]}
    assert panel(at)["start"] != panel(at)["values"]
    # what this run does not have, or values for other blocks, are ignored
    for tv, z in (
        ("test.9.0.routed", "z0:1,1,1,1"),
        ("test.1.99999.0", "z0:1,1,1,1"),
        ("prior.0.0.7", "z0:1,1,1,1"),
        ("test.1.3.1", "z0:1,1,1,1"),  # expert 1's blocks are z1
        ("nonsense", "z1:nan,1,1,1"),
        ("test.1.3.0", "z0:1,1,x"),
    ):
        at = open_with(tv=tv, z=z)
        assert panel(at)["values"] == panel(at)["start"], (tv, z)


def test_download_buttons(page, media):
    buttons = {b.label: b for b in page.get("download_button")}
    assert set(buttons) == {
        *("Download PNG", "Download GIF"),
        *("Direction PNG", "Direction GIF", "Direction NPZ"),
    }
    from_url = {label: b.proto.url for label, b in buttons.items()}
    png = media(from_url["Download PNG"])
    assert png.ndim == 3 and png.shape[2] == 3
    assert media(from_url["Download GIF"]).size > 0


def test_sweep_grid_follows_the_number_of_values(page, media):
    def grid_width():
        return media(sweep_grid(page).value[0]).shape[1]

    wide = grid_width()
    page.slider(key="tv_nvalues").set_value(5).run()
    assert not page.exception
    assert grid_width() < wide


def test_rows_ordered_by_kl_and_the_posterior_range(page, media):
    caption = sweep_grid(page).captions[0]
    kls = [float(v) for v in re.findall(r"KL (-?[0-9.]+)", caption)]
    assert len(kls) == 4 and kls == sorted(kls, reverse=True)  # most informative first
    top = re.findall(r"(z\d\[\d\])", caption)[:2]
    assert [f"{n}[{i}]" for n, i in panel(page)["pad"]] == top  # the pad's default pair
    prior = media(sweep_grid(page).value[0])
    page.radio(key="tv_order").set_value("index").run()
    names = re.findall(r"(z\d\[\d\])", sweep_grid(page).captions[0])
    assert names == sorted(names)
    page.radio(key="tv_range").set_value("posterior min–max").run()
    assert not page.exception
    assert "each variable's own min..max" in sweep_grid(page).captions[0]
    assert (media(sweep_grid(page).value[0]) != prior).any()


def test_choose_expert_by_hand(page, model):
    box = page.selectbox(key="tv_expert")
    assert box.options[0] == "routed (eq. 7)"
    images, graphs = {}, {}
    for expert in model.experts():
        page.selectbox(key="tv_expert").set_value(expert).run()
        assert not page.exception
        assert expert_caption(page) == f"Decoding through expert {expert} (chosen by hand)."
        args = panel(page)
        assert [b["name"] for b in args["blocks"]] == [f"z{expert}"]
        assert sum(b["dim"] for b in args["blocks"]) == 4
        images[expert], graphs[expert] = decoded(page), args["model"]
    assert len(images) == 2
    assert (images[0] != images[1]).any()
    assert graphs[0] != graphs[1]  # each expert's decoder is its own graph


def test_prior_sample_source(page):
    page.selectbox(key="tv_source").set_value("prior sample").run()
    assert not page.exception
    assert not page.error
    assert "Decoding through expert" in expert_caption(page)
    captions = [c for im in page.get("image") for c in im.captions]
    assert "input" not in captions
    first, image = panel(page)["values"], decoded(page)
    page.number_input(key="tv_index").set_value(1).run()  # the seed of the prior draw
    assert not page.exception
    second = panel(page)["values"]
    assert first != second and sum(len(v) for v in second.values()) == 4
    assert (decoded(page) != image).any()


def test_other_task_and_snapshot(page):
    page.selectbox(key="tv_task").set_value(1).run()
    assert not page.exception
    page.select_slider(key="snap-good/tiny").set_value(0).run()
    assert not page.exception
    assert not page.error
    assert panel(page)["blocks"]


# -- along a direction (issue 18 part 3) -----------------------------------------------------


def direction_image(page, media) -> np.ndarray:
    (im,) = [im for im in page.get("image") if im.captions[0].startswith("t = ")]
    return media(im.value[0])


def direction_grid(page):
    (im,) = [im for im in page.get("image") if im.captions[0].startswith("along the direction")]
    return im


def test_a_slider_along_the_direction_between_two_classes(page, media, model, run_roots):
    from lifelong import data as ldata
    from lifelong.explore import directions, images

    assert page.radio(key="tv_dir_by").value == "class"
    frm, to = page.selectbox(key="tv_dir_from"), page.selectbox(key="tv_dir_to")
    assert (frm.value, to.value) == ("0", "1") and frm.options == [str(c) for c in range(10)]
    (caption,) = [c.value for c in page.caption if c.value.startswith("t moves")]
    assert "t = 0 is the mean code of the first, t = 1 of the second" in caption
    expert = int(re.search(r"expert (\d+)'s", caption)[1])
    assert page.query_params["dir"] == "class.0.1.means" and page.query_params["dt"] == "0.50"
    # t = 0 and t = 1 decode the two classes' mean codes (posterior means, expert's space)
    run = runs.open_run(run_roots["good"])
    tests = [ldata.load_task(spec, "test", run.manifest.get("seed", 0)) for spec in run.tasks]
    x0 = torch.cat([t.x[t.y == 0] for t in tests])
    x1 = torch.cat([t.x[t.y == 1] for t in tests])
    with torch.no_grad():
        means = [model.encode(x, expert)[f"z{expert}"]["mu"].mean(0) for x in (x0, x1)]
    seen = {}
    for t, mean in ((0.0, means[0]), (1.0, means[1])):
        page.slider(key="tv_dir_t").set_value(t).run()
        assert not page.exception, page.exception
        want = images.grid(traversal.decode(model, {f"z{expert}": mean.tolist()}, expert), 1, 0, 4)
        seen[t] = direction_image(page, media)
        assert np.abs(seen[t].astype(int) - want.astype(int)).max() <= 1, t
    assert (seen[0.0] != seen[1.0]).any()
    assert page.query_params["dt"] == "1.00"
    # the swept grid: 9 columns over -0.5..1.5 by default, then 5
    grid = direction_grid(page)
    assert grid.captions[0].endswith("-0.50 -0.25 +0.00 +0.25 +0.50 +0.75 +1.00 +1.25 +1.50")
    wide = media(grid.value[0]).shape[1]
    page.select_slider(key="tv_dir_steps").set_value(5).run()
    assert media(direction_grid(page).value[0]).shape[1] < wide
    # another pair of classes, anchored at the panel's code
    page.selectbox(key="tv_dir_to").set_value("7").run()
    page.radio(key="tv_dir_anchor").set_value("code").run()
    assert not page.exception
    assert page.query_params["dir"] == "class.0.7.code"
    (caption,) = [c.value for c in page.caption if c.value.startswith("t moves")]
    assert "t = 0 is the panel's code" in caption
    assert directions.T_RANGE == (-0.5, 1.5)


def test_the_same_class_twice_is_a_zero_direction(page):
    page.selectbox(key="tv_dir_to").set_value("0").run()
    assert not page.exception and not page.error
    (info,) = [i.value for i in page.info]
    assert info.startswith("0 and 0 have the same mean code in expert ")
    assert "the direction between them is zero" in info
    assert not [s for s in page.slider if s.key == "tv_dir_t"]


def test_a_direction_between_tasks_and_its_address(run_roots, v2_navigation, cache, media):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["dir"] = "task.1.0.code"
    at.query_params["dt"] = "0.25"
    at.switch_page("views/traversal.py").run()
    assert not at.exception and not at.error and not at.warning, at.exception
    assert at.radio(key="tv_dir_by").value == "task"
    assert at.selectbox(key="tv_dir_from").value.startswith("1: ")
    assert at.selectbox(key="tv_dir_to").value.startswith("0: ")
    assert at.radio(key="tv_dir_anchor").value == "code"
    assert at.slider(key="tv_dir_t").value == pytest.approx(0.25)
    before = direction_image(at, media)
    at.slider(key="tv_dir_t").set_value(1.5).run()
    assert (direction_image(at, media) != before).any()
    # a malformed link is ignored
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["dir"] = "task.9.x.code"
    at.switch_page("views/traversal.py").run()
    assert not at.exception and at.radio(key="tv_dir_by").value == "class"


def test_a_family_without_an_encoder_says_so(page, monkeypatch):
    from lifelong.explore import directions

    def no_encoder(*args, **kwargs):
        raise NotImplementedError

    monkeypatch.setattr(directions, "encode_blocks", no_encoder)
    page.selectbox(key="tv_dir_to").set_value("5").run()  # a pair not computed (cached) yet
    assert not page.exception
    assert "lmvae has no encoder: its images have no codes to take means of." in [
        c.value for c in page.caption
    ]
