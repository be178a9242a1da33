"""The real app in headless Chromium: `streamlit run app.py` on a tiny run, driven by Playwright.

Screenshots for the README: `LIFELONG_SCREENSHOTS=1 python -m pytest tests/e2e` writes
docs/screenshots/overview.png and traversal.png (viewport 1400x1000). By default the server
shows a tiny run trained by the fixture; LIFELONG_E2E_RUN_ROOTS=pretrained (folders separated
by os.pathsep, as for LIFELONG_RUN_ROOTS) shows real runs instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pagelist import PAGES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 60_000  # a cold page imports torch and builds the test sets

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"streamlit did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(roots: str, log_dir: Path):
    """`streamlit run app.py` on a free port over the run roots `roots`; yields its URL and
    kills it afterwards."""
    port = free_port()
    env = {**os.environ, "LIFELONG_RUN_ROOTS": roots}
    log = log_dir / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    cmd += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """(url, first run's name): `streamlit run app.py` on a free port; killed afterwards."""
    pytest.importorskip("playwright.sync_api")
    roots = os.environ.get("LIFELONG_E2E_RUN_ROOTS") or str(tiny_run.parent)
    from lifelong import runs
    from lifelong.zoo import ZOO

    order = {z["name"]: i for i, z in enumerate(ZOO)}  # the app's picker order
    found = [p for r in roots.split(os.pathsep) if r for p in runs.find_runs(ROOT / r)]
    found.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    if not found:
        pytest.skip(f"no run under {roots}")
    with serve(roots, tmp_path_factory.mktemp("streamlit")) as url:
        yield url, found[0].name


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # expect() has its own 5 s default
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab on the app's first page; fails the test on any exception block shown."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    yield page
    no_errors(page)
    page.close()


def screenshot(page, name: str) -> None:
    if os.environ.get("LIFELONG_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        # back to the top (checking images scrolled down), then let the charts finish painting
        page.locator("[data-testid=stMain]").evaluate("e => e.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / f"{name}.png"))


def no_errors(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("[data-testid=stException]")).to_have_count(0)
    expect(page.locator("[data-testid=stAlertContentError]")).to_have_count(0)


def open_page(page, title: str):
    """Navigate through the sidebar; returns the main area once the page's title shows."""
    from playwright.sync_api import expect

    main = page.locator("[data-testid=stMain]")
    expect(main.locator("h1").first).to_be_visible()
    page.locator("[data-testid=stSidebarNav] a").filter(has_text=title).click()
    expect(main.locator("h1")).to_have_text(title)
    return main


def images_render(main, at_least: int = 1) -> None:
    from playwright.sync_api import expect

    imgs = main.locator("[data-testid=stImage] img")
    expect(imgs.first).to_be_visible()
    assert imgs.count() >= at_least
    # every image decodes to real pixels (scrolled to: images below the fold load lazily)
    for i in range(imgs.count()):
        img = imgs.nth(i)
        img.scroll_into_view_if_needed()
        img.evaluate(
            "e => e.complete && e.naturalWidth > 0 || new Promise((ok, bad) =>"
            " { e.onload = ok; e.onerror = () => bad(new Error('image failed: ' + e.src)); })"
        )
        assert img.evaluate("e => e.naturalWidth") > 0


def test_overview(page, server):
    from playwright.sync_api import expect

    _, run_name = server
    main = page.locator("[data-testid=stMain]")
    expect(main.locator("h1")).to_have_text(run_name, timeout=TIMEOUT_MS)
    images_render(main, 2)
    expect(main.locator("[data-testid=stPlotlyChart]")).to_be_visible()
    screenshot(page, "overview")


def settled_src(page, img, quiet_ms: int = 1500) -> str:
    """The img's src once it has not changed for quiet_ms (queued slider reruns done)."""
    src, deadline = img.get_attribute("src"), time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        page.wait_for_timeout(quiet_ms)
        now = img.get_attribute("src")
        if now == src:
            return src
        src = now
    raise AssertionError("the decoded image kept changing")


def test_traversal_slider_decodes_live(page):
    from playwright.sync_api import expect

    main = open_page(page, "Latent traversal")
    decoded = main.locator("[data-testid=stImage]").filter(has_text="decoded")
    expect(decoded.locator("img")).to_be_visible()
    sliders = main.locator("[data-testid=stSlider] input[type=range]")
    assert sliders.count() >= 2  # the latent variables and the sweep's controls
    before = decoded.locator("img").get_attribute("src")
    value = float(sliders.first.get_attribute("value"))
    sliders.first.focus()
    there, back = ("ArrowRight", "ArrowLeft") if value < 2 else ("ArrowLeft", "ArrowRight")
    for _ in range(10):
        sliders.first.press(there)
    expect(decoded.locator("img")).not_to_have_attribute("src", before)
    assert float(sliders.first.get_attribute("value")) != pytest.approx(value)
    # The image is a data: URL of the decoded pixels: one step on and one step back must give
    # the very same image again, so each rerun decoded the slider's current value, not a
    # stale one (the first steps snap the posterior mean onto the slider's 0.05 grid).
    moved = settled_src(page, decoded.locator("img"))
    sliders.first.press(there)
    expect(decoded.locator("img")).not_to_have_attribute("src", moved, timeout=TIMEOUT_MS)
    sliders.first.press(back)
    expect(decoded.locator("img")).to_have_attribute("src", moved, timeout=TIMEOUT_MS)
    images_render(main, 2)
    screenshot(page, "traversal")


def test_latent_map_click_shows_the_point(page):
    from playwright.sync_api import expect

    main = open_page(page, "Latent map")
    chart = main.locator("[data-testid=stPlotlyChart]")
    expect(chart).to_be_visible()
    caption = main.locator("[data-testid=stImage]").filter(has_text="point ")
    expect(caption).to_contain_text("point 0:")
    points = chart.locator(".scatterlayer .trace").last.locator(".point")
    expect(points.first).to_be_visible()
    box = points.last.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(caption).not_to_contain_text("point 0:")
    images_render(main, 1)
    screenshot(page, "latent-map")


SEPARATE = ("Overview", "Latent traversal", "Latent map")


@pytest.mark.parametrize(
    "title, shot",
    # the Overview, the traversal and the map have tests of their own above
    [(p.title, p.shot) for p in PAGES if p.title not in SEPARATE],
)
def test_page_renders(page, title, shot):
    from playwright.sync_api import expect

    main = open_page(page, title)
    if title in ("Expert timeline", "dHSIC heatmap"):
        expect(main.locator("[data-testid=stPlotlyChart]").first).to_be_visible()
    elif title == "Shared / private":
        # CPVAE only: on the tiny L-MVAE run the page says so in an st.info, on a CPVAE run
        # it draws its grids
        shown = main.locator("[data-testid=stAlertContentInfo], [data-testid=stImage] img")
        expect(shown.first).to_be_visible()
    elif title == "Compare runs":  # one tiny run: it asks for a second; shipped: the board
        shown = main.locator("[data-testid=stAlertContentInfo], [data-testid=stDataFrame]")
        expect(shown.first).to_be_visible()
    elif title == "Train":  # the form; no job of this new session yet
        expect(main.locator("[data-testid=stButton]").first).to_be_visible()
    else:
        images_render(main, 1)
    screenshot(page, shot)
