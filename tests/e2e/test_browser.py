"""The real app in headless Chromium: `streamlit run app.py` on a tiny run, driven by Playwright.

Screenshots for the README: `LIFELONG_SCREENSHOTS=1 python -m pytest tests/e2e` writes
docs/screenshots/overview.png and the other pages' shots (viewport 1400x1000; traversal.png:
test_browser_traversal.py, on the first shipped run). By default the server
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


def test_traversal_panel_decodes_in_the_page(page):
    """The traversal's slider panel decodes in the page while a slider is dragged, before
    the server hears of it. tests/e2e/test_browser_traversal.py checks every shipped run in
    detail (pixels against the server's decode) and takes the traversal screenshot."""
    from playwright.sync_api import expect

    main = open_page(page, "Latent traversal")
    panel = page.frame_locator("iframe[title*=traversal_panel]")
    expect(panel.locator("#caption")).to_have_text("decoded in this page")
    frame = next(f for f in page.frames if "traversal_panel" in f.url)
    shown = "document.getElementById('image').toDataURL()"
    before = frame.evaluate(shown)
    box = panel.locator("input[type=range]").first.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2, steps=5)
    frame.wait_for_function(f"{shown} !== {before!r}")
    assert frame.evaluate("traversalPanel.sent.length") == 0  # the drag goes on: not yet
    page.mouse.up()
    frame.wait_for_function("traversalPanel.sent.length === 1")
    images_render(main, 1)


SEPARATE = ("Overview", "Latent traversal", "Latent map")


@pytest.mark.parametrize(
    "title, shot",
    # the Overview and the traversal have tests of their own above; the map's is in
    # test_browser_latent_map.py
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
