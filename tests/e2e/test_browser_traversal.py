"""The Latent traversal panel in headless Chromium (issue 19): on every shipped run, a drag
decodes in the page at intermediate positions (the server hears nothing until the release),
and the page's pixels at the final value are the server's decode.

`streamlit run app.py` serves pretrained/ (LIFELONG_E2E_RUN_ROOTS replaces it, as in
test_browser.py). `LIFELONG_SCREENSHOTS=1` retakes docs/screenshots/traversal.png on the
first run (L-MVAE).
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    no_errors,
    screenshot,
    serve,
)

ROOT = Path(__file__).resolve().parents[2]
ROOTS = os.environ.get("LIFELONG_E2E_RUN_ROOTS") or "pretrained"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def shipped_runs() -> list[str]:
    """Picker labels ("<root folder>/<run>") of every run under ROOTS, in the picker's order."""
    from lifelong import runs
    from lifelong.zoo import ZOO

    order = {z["name"]: i for i, z in enumerate(ZOO)}
    found = [p for r in ROOTS.split(os.pathsep) if r for p in runs.find_runs(ROOT / r)]
    found.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    return [f"{p.parent.name}/{p.name}" for p in found]


RUNS = shipped_runs()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    with serve(ROOTS, tmp_path_factory.mktemp("streamlit-traversal")) as url:
        yield url


@pytest.fixture(scope="module")
def browser(url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_traversal(browser, url, label):
    """A fresh tab on the traversal page of run `label`; (page, the panel's frame) once the
    panel has painted its first in-page frame."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/traversal?run={label}")
    page.locator("iframe[title*=traversal_panel]").wait_for()
    frame = next(f for f in page.frames if "traversal_panel" in f.url)
    frame.wait_for_function(
        "window.traversalPanel && (traversalPanel.frames.length > 0 || traversalPanel.failed)"
    )
    assert frame.evaluate("traversalPanel.failed") is None
    assert frame.locator("#caption").inner_text() == "decoded in this page"
    return page, frame


def state(frame) -> dict:
    return json.loads(
        frame.evaluate(
            "JSON.stringify({values: traversalPanel.values, sent: traversalPanel.sent.length,"
            " frames: traversalPanel.frames.length, server: traversalPanel.server,"
            " pixels: Array.from(traversalPanel.pixels || [])})"
        )
    )


def canvas_pixels(frame) -> np.ndarray:
    """What the canvas shows, at its own resolution, as [H, W, 3]."""
    h, w, data = frame.evaluate(
        "(() => { const c = document.getElementById('image');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " return [c.height, c.width, Array.from(d)]; })()"
    )
    return np.array(data, dtype=np.uint8).reshape(h, w, 4)[..., :3]


def as_rgb(pixels: list, shape) -> np.ndarray:
    arr = np.array(pixels, dtype=np.uint8).reshape(shape)
    return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr


def png(url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def wait_for_a_frame(frame, after: int) -> None:
    frame.wait_for_function(f"traversalPanel.frames.length > {after}")


def wait_for_the_server(frame) -> dict:
    """Until the page has sent its current values and the server has rerun with them."""
    frame.wait_for_function(
        "(() => { const p = traversalPanel, last = JSON.stringify(p.sent.at(-1)?.values);"
        " return last === JSON.stringify(p.values) && last === JSON.stringify(p.server.values)"
        " })()"
    )
    return state(frame)


def assert_matches_the_server(frame) -> None:
    s = wait_for_the_server(frame)
    assert s["values"] == s["server"]["values"]
    server = png(s["server"]["image"])
    mine = np.array(s["pixels"], dtype=np.uint8).reshape(server.shape)
    diff = np.abs(mine.astype(int) - server.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.99, diff.max()
    assert (canvas_pixels(frame) == as_rgb(s["pixels"], server.shape)).all()


def drag(page, frame, slider, steps: int = 8, leftward: bool = False) -> list[bytes]:
    """Press on the slider's left end, move to its right end in `steps` (or right to left),
    waiting for a painted frame at each position; the page's pixels at each one. The mouse
    stays down."""
    slider.scroll_into_view_if_needed()  # a run with many latents lists them below the fold
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2

    def at(k: int) -> float:  # the k-th of `steps` positions from the starting end
        f = (steps - k) / steps if leftward else k / steps
        return box["x"] + 2 + (box["width"] - 4) * f

    page.mouse.move(at(0), y)
    page.mouse.down()
    seen = []
    for k in range(1, steps + 1):
        before = state(frame)["frames"]
        page.mouse.move(at(k), y)
        wait_for_a_frame(frame, before)
        seen.append(bytes(state(frame)["pixels"]))
    return seen


@pytest.mark.parametrize("label", RUNS)
def test_a_drag_decodes_in_the_page_on_every_shipped_run(browser, url, label):
    page, frame = open_traversal(browser, url, label)
    start = state(frame)
    # the most informative variable: the 2-D pad's default x
    name = frame.locator("#pad-x").input_value()
    name = name or frame.locator("input[type=range]").first.get_attribute("aria-label")
    slider = frame.locator(f'input[aria-label="{name}"]')
    moved_var = name.split("[")
    # a code already at the slider's right end (+3, where a posterior mean beyond it is
    # clipped) is dragged leftwards, so that the drag ends somewhere new
    end = -3.0 if start["values"][moved_var[0]][int(moved_var[1][:-1])] >= 3.0 else 3.0
    seen = drag(page, frame, slider, leftward=end < 0)
    during = state(frame)
    assert during["sent"] == 0, "the server heard of the drag before its end"
    assert len(set(seen)) >= len(seen) // 2, f"{label}: the image hardly moved while dragging"
    assert bytes(start["pixels"]) not in set(seen[1:])
    page.mouse.up()
    assert_matches_the_server(frame)
    assert state(frame)["values"][moved_var[0]][int(moved_var[1][:-1])] == pytest.approx(end)
    # a categorical block (InfoGAN's d, LGM's z_d) is a selector: another category decodes
    buttons = frame.locator(".selector button[aria-pressed=false]")
    if buttons.count():
        before = state(frame)
        buttons.last.click()
        wait_for_a_frame(frame, before["frames"])
        assert state(frame)["pixels"] != before["pixels"], f"{label}: the selector did nothing"
        assert_matches_the_server(frame)
    no_errors(page)
    page.close()


@pytest.mark.skipif(not RUNS, reason="no shipped run")
def test_keys_and_the_pad_and_another_expert(browser, url):
    page, frame = open_traversal(browser, url, RUNS[0])
    slider = frame.locator("input[type=range]").first
    key = slider.get_attribute("aria-label")
    block, i = key.split("[")[0], int(key.split("[")[1][:-1])
    value = state(frame)["values"][block][i]
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft" if value > 0 else "ArrowRight")
    after = wait_for_the_server(frame)["values"][block][i]
    assert after == pytest.approx(
        round((value - 0.15 if value > 0 else value + 0.15) / 0.05) * 0.05
    )
    assert_matches_the_server(frame)
    # the 2-D pad moves its two variables at once, from its top-right corner
    x, y = frame.locator("#pad-x").input_value(), frame.locator("#pad-y").input_value()
    pad = frame.locator("#pad").bounding_box()
    page.mouse.move(pad["x"] + pad["width"] / 2, pad["y"] + pad["height"] / 2)
    page.mouse.down()
    page.mouse.move(pad["x"] + pad["width"] - 1, pad["y"] + 1, steps=5)
    page.mouse.up()
    values = wait_for_the_server(frame)["values"]
    for var, want in ((x, 3.0), (y, 3.0)):
        assert values[var.split("[")[0]][int(var.split("[")[1][:-1])] == pytest.approx(want)
    assert_matches_the_server(frame)
    # the address carries the values the server holds (?z=...), for a link to this view
    from urllib.parse import parse_qs, urlparse

    from lifelong.explore import traversal

    linked = traversal.codes_from_text(parse_qs(urlparse(page.url).query)["z"][0])
    for name, vals in state(frame)["values"].items():
        assert linked[name] == pytest.approx(vals, abs=1e-3)
    screenshot(page, "traversal")
    # back to the input's code
    start = json.loads(frame.evaluate("JSON.stringify(traversalPanel.start)"))
    assert state(frame)["values"] != start
    frame.locator("#reset").click()
    assert wait_for_the_server(frame)["values"] == start
    assert_matches_the_server(frame)
    # another expert of a mixture: the panel loads that expert's graph and decodes through it
    main = page.locator("[data-testid=stMain]")
    boxes = main.locator("[data-testid=stSelectbox]").filter(has_text="Expert")
    if boxes.count():
        old = frame.evaluate("traversalPanel.state")
        boxes.first.click()
        page.get_by_role("option").filter(has_text="expert 0").click()
        frame.wait_for_function(
            f"traversalPanel.state !== {json.dumps(old)} && traversalPanel.ready"
            " && traversalPanel.frames.at(-1).state === traversalPanel.state"
        )
        s = state(frame)
        server = png(s["server"]["image"])
        assert np.abs(np.array(s["pixels"]).reshape(server.shape) - server.astype(int)).max() <= 1
    no_errors(page)
    page.close()


@pytest.mark.skipif(not RUNS, reason="no shipped run")
def test_the_direction_slider_moves_its_image_and_the_address(browser, url):
    """Along a direction (issue 18 part 3): keys on the t slider decode another image (a
    fragment rerun on the server, on its CPU) and the address follows (?dir=...&dt=...)."""
    from playwright.sync_api import expect

    page, _ = open_traversal(browser, url, RUNS[0])
    main = page.locator("[data-testid=stMain]")
    block = main.locator("[data-testid=stSlider]").filter(has_text="t along the direction")
    block.scroll_into_view_if_needed()

    def image(t: str):
        return main.locator("[data-testid=stImage]").filter(has_text=f"t = {t}").locator("img")

    expect(image("+0.50")).to_be_visible()
    before = image("+0.50").screenshot()
    thumb = block.get_by_role("slider")
    thumb.focus()
    for _ in range(6):
        thumb.press("ArrowRight")
    expect(image("+0.80")).to_be_visible()
    page.wait_for_function("location.search.includes('dt=0.80')")
    assert image("+0.80").screenshot() != before, "the image did not change along the direction"
    assert "dir=class.0.1.means" in page.url
    # the swept grid along the direction is there, with its downloads
    expect(main.get_by_text("along the direction, t = ")).to_be_visible()
    expect(main.get_by_role("button", name="Direction PNG")).to_be_visible()
    no_errors(page)
    page.close()
