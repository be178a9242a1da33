"""Screenshots of the pages that need a particular family's run (README), from a real
server in headless Chromium: `python docs/take_screenshots.py [GENERATION_RUN] [NAME ...]`.

The browser test (`LIFELONG_SCREENSHOTS=1 LIFELONG_E2E_RUN_ROOTS=pretrained pytest tests/e2e`)
takes every page on the first shipped run (L-MVAE); the dHSIC heatmap, Shared / private and
Generation grid are retaken here on the MVAE, CPVAE (Table 1's `cpvae-grassy`), InfoGAN and
LGM runs, the dHSIC heatmap of MVAE-GS and the Expert timeline of L-MVAE-Dyn too; the Latent
map's time-lapse of the fine-tuned VAE and of L-MVAE is taken as two frames side by side
(after the first task | after the last; every task, then task 0 alone),
`latent-map-vae.png` and `latent-map-lmvae.png`. Needs /usr/bin/chromium and the playwright
package (never `playwright install`).
"""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the e2e test's flags)

SHOTS = [  # (url path, run label, file, extra action)
    ("dHSIC heatmap", "pretrained/mvae-beta10-digits-glyphs-shapes", "dhsic"),
    ("Shared / private", "pretrained/cpvae-grassy", "sharedprivate"),
    (
        "Generation grid",
        sys.argv[1] if len(sys.argv) > 1 else "pretrained/infogan-digits-split",
        "generation",
    ),
    ("Generation grid", "pretrained/lgm-digits-glyphs-shapes", "generation-lgm"),
    ("Train", "pretrained/lmvae-digits-glyphs-shapes", "train"),
    ("Compare runs", "pretrained/lmvae-fashion5", "compare-fashion"),
    ("Expert timeline", "pretrained/lmvae-dyn-digits", "timeline-dyn"),
    ("dHSIC heatmap", "pretrained/mvae-gs-beta10-fashion", "dhsic-gs"),
]
TIMELAPSES = [  # (run label, file): the time-lapse's first and last frames side by side
    ("pretrained/vae-digits-glyphs-shapes", "latent-map-vae"),
    ("pretrained/lmvae-digits-glyphs-shapes", "latent-map-lmvae"),
    ("pretrained/vae-fashion5", "latent-map-vae-fashion"),
    ("pretrained/lmvae-fashion5", "latent-map-lmvae-fashion"),
]


def timelapse_pair(browser, url: str, run: str, name: str) -> None:
    """The map component at its first and last frames side by side: every task (top row),
    then task 0 alone (bottom row: the later tasks switched off in the legend)."""
    import io

    from PIL import Image

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(f"{url}/latent_map?run={run}")
    page.locator("iframe[title*=timelapse_map]").wait_for()
    frame = next(f for f in page.frames if "timelapse_map" in f.url)
    frame.wait_for_function("window.latentMap && latentMap.paints > 0 && latentMap.s > 1")
    page.wait_for_timeout(1500)
    last = frame.evaluate("latentMap.s") - 1
    shots = []
    for only_first in (False, True):
        if only_first:
            buttons = frame.locator("#legend button")
            for i in range(1, buttons.count()):
                buttons.nth(i).click()
        for k in (0, last):
            frame.locator("#frame").fill(str(k))
            frame.wait_for_function(f"latentMap.pos === {k}")
            frame.evaluate("document.activeElement.blur()")  # no focus ring on the slider
            page.wait_for_timeout(300)
            png = frame.locator("#map").screenshot()
            shots.append(Image.open(io.BytesIO(png)).convert("RGB"))
    w, h = shots[0].size
    out = Image.new("RGB", (2 * w + 16, 2 * h + 16), "white")
    for i, shot in enumerate(shots):
        out.paste(shot, ((i % 2) * (w + 16), (i // 2) * (h + 16)))
    out.save(ROOT / "docs" / "screenshots" / f"{name}.png", optimize=True)
    print("shot", name)
    page.close()


only = sys.argv[2:]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
proc = subprocess.Popen(
    [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.STDOUT,
)
url = f"http://127.0.0.1:{port}"
for _ in range(300):
    try:
        urllib.request.urlopen(url + "/_stcore/health", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
try:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for path, run, name in SHOTS:
            if only and name not in only:
                continue
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/?run={run}")
            page.locator("[data-testid=stMain] h1").first.wait_for()
            page.wait_for_timeout(1500)
            page.locator("[data-testid=stSidebarNav] a").filter(has_text=path).click()
            page.locator("[data-testid=stMain] h1").filter(has_text=path).first.wait_for()
            page.wait_for_timeout(2000)
            page.wait_for_load_state("networkidle")
            # wait until no element is "stale" (still running)
            for _ in range(120):
                if page.locator("[data-testid=stStatusWidget]").count() == 0:
                    break
                page.wait_for_timeout(500)
            page.wait_for_timeout(3000)
            page.locator("[data-testid=stMain]").evaluate("e => e.scrollTo(0, 0)")
            page.screenshot(path=str(ROOT / "docs" / "screenshots" / f"{name}.png"))
            print("shot", name, page.locator("[data-testid=stException]").count(), "exceptions")
            page.close()
        for run, name in TIMELAPSES:
            if not only or name in only:
                timelapse_pair(b, url, run, name)
finally:
    proc.terminate()
