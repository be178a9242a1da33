"""The Latent map's time-lapse in headless Chromium (issue 18): the play button steps through
the snapshots with the points moving smoothly (frames painted between snapshots, the canvas
changing), the image shows when the pointer rests on a point, and a click decodes that point
on the server.

`streamlit run app.py` serves the tiny run test_browser.py trains (whose time-lapse the page
computes off its thread), or LIFELONG_E2E_RUN_ROOTS' runs (pretrained/: stored time-lapses).
`LIFELONG_SCREENSHOTS=1` retakes docs/screenshots/latent-map.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_browser import (  # noqa: F401  (fixtures: the server, a browser, a tab)
    CHROMIUM,
    TIMEOUT_MS,
    browser,
    open_page,
    page,
    screenshot,
    server,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def the_map(tab):
    """The map's frame once it shows the whole time-lapse (not the snapshot's own map that
    stands in while the time-lapse computes)."""
    tab.locator("iframe[title*=timelapse_map]").wait_for()
    deadline = tab.evaluate("Date.now()") + TIMEOUT_MS
    while tab.evaluate("Date.now()") < deadline:
        frame = next(f for f in tab.frames if "timelapse_map" in f.url)
        try:
            if frame.evaluate("!!(window.latentMap && latentMap.paints > 0 && latentMap.s > 1)"):
                return frame
        except Exception:  # the frame was replaced by a rerun: look again
            pass
        tab.wait_for_timeout(100)
    raise AssertionError("the time-lapse did not show")


def canvas(frame) -> str:
    return frame.evaluate("document.getElementById('plot').toDataURL()")


def find_a_point(tab, frame) -> int:
    """Move the pointer across the map until a point is under it; its index."""
    box = frame.locator("#plot").bounding_box()
    for gy in range(20, int(box["height"]) - 10, 24):
        for gx in range(20, int(box["width"]) - 10, 24):
            tab.mouse.move(box["x"] + gx, box["y"] + gy)
            tab.wait_for_timeout(25)
            if (i := frame.evaluate("latentMap.hovered")) >= 0:
                return i
    raise AssertionError("no point under the pointer anywhere on the map")


def test_play_moves_the_points_through_the_snapshots(page):  # noqa: F811 (the fixture)
    from playwright.sync_api import expect

    main = open_page(page, "Latent map")
    frame = the_map(page)
    assert frame.evaluate("latentMap.renderer") == "webgl"
    s = frame.evaluate("latentMap.s")
    frame.locator("#frame").fill("0")
    frame.wait_for_function("latentMap.pos === 0")
    first = canvas(frame)
    expect(frame.locator("#label")).to_contain_text("after task 0")
    paints = frame.evaluate("latentMap.paints")
    frame.locator("#play").click()
    expect(frame.locator("#play")).to_have_text("⏸ Pause")
    frame.wait_for_function(f"!latentMap.playing && latentMap.pos === {s - 1}", timeout=30_000)
    expect(frame.locator("#play")).to_have_text("▶ Play")
    drawn = frame.evaluate("latentMap.drawn")
    between = [p for p in drawn if 0 < p < s - 1 and abs(p - round(p)) > 0.05]
    assert len(between) >= 10 * (s - 1), drawn  # smooth: many frames between snapshots
    assert drawn == sorted(drawn) and frame.evaluate("latentMap.paints") > paints + 10
    expect(frame.locator("#label")).to_contain_text(f"after task {s - 1}")
    assert canvas(frame) != first  # later tasks' points moved
    # the image of the point the pointer rests on
    i = find_a_point(page, frame)
    frame.wait_for_function("latentMap.thumbShown === latentMap.hovered", timeout=30_000)
    expect(frame.locator("#tip")).to_be_visible()
    expect(frame.locator("#tiptext")).to_contain_text(f"(point {i})")
    # a click decodes it on the server, through the snapshot the map shows
    page.mouse.down()
    page.mouse.up()
    frame.wait_for_function("latentMap.sent.length === 1")
    caption = main.locator("[data-testid=stImage]").filter(has_text="point ")
    expect(caption).to_contain_text(f"point {i}:")
    expect(caption).to_contain_text(f"after task {s - 1}")
    screenshot(page, "latent-map")


def test_the_html_export_plays_offline(browser, tiny_run, tmp_path):  # noqa: F811
    """The HTML download opened from disk with the network off: it draws, plays and shows
    the image under the pointer (its script, points and images are inlined)."""
    import latentmap_panel
    from lifelong import evaldata, runs
    from lifelong.explore import timelapse

    run = runs.open_run(tiny_run)
    tests, _ = evaldata.test_sets(run)
    tl = timelapse.compute(tiny_run, tests, "task expert", "PCA")
    path = tmp_path / "map.html"
    path.write_text(latentmap_panel.html(tl, tests, run, "task", 0))
    context = browser.new_context(offline=True, viewport={"width": 1000, "height": 800})
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(path.as_uri())
        tab.wait_for_function("window.latentMap && latentMap.paints > 0")
        assert tab.evaluate("latentMap.n") == len(tl) and tab.evaluate("latentMap.failed") is None
        tab.click("#play")
        tab.wait_for_function("!latentMap.playing && latentMap.pos === latentMap.s - 1")
        find_a_point(tab, tab.main_frame)
        tab.wait_for_function("latentMap.thumbShown === latentMap.hovered")
    finally:
        context.close()


def test_colour_by_a_direction_draws_a_colour_bar(page):  # noqa: F811 (the fixture)
    """Colour by: direction (issue 18 part 3): the legend becomes one colour bar from 0 (the
    first class's mean) to 1 (the second's), the points take its colours, and the image
    under the pointer says where along it the point sits."""
    from playwright.sync_api import expect

    main = open_page(page, "Latent map")
    frame = the_map(page)
    before = canvas(frame)
    box = main.locator("[data-testid=stSelectbox]").filter(has_text="Colour by")
    box.click()
    page.get_by_role("option").filter(has_text="direction (from → to)").click()
    expect(main.locator("[data-testid=stSelectbox]").filter(has_text="From")).to_be_visible()
    deadline = page.evaluate("Date.now()") + TIMEOUT_MS
    while page.evaluate("Date.now()") < deadline:  # the rerun may replace the frame
        frame = next((f for f in page.frames if "timelapse_map" in f.url), None)
        try:
            if frame and frame.evaluate("document.querySelector('#legend .scale') !== null"):
                break
        except Exception:
            pass
        page.wait_for_timeout(100)
    legend = frame.locator("#legend")
    expect(legend).to_contain_text("t from 0 (0) to 1 (1)")
    expect(legend.locator(".scale b")).to_have_count(2)
    frame.wait_for_function("latentMap.paints > 0")
    assert canvas(frame) != before  # the points took the scale's colours
    find_a_point(page, frame)
    expect(frame.locator("#tiptext")).to_contain_text(" · t ")
