"""The real app in headless Chromium on a run whose dataset was removed after training
(issue 14): every page opens from the run's stored evaluation images, with no exception."""

from __future__ import annotations

import shutil

import pytest

from pagelist import RUN_PAGES
from tests.data.test_data_idx import make_dir
from tests.e2e.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    no_errors,
    open_page,
    serve,
)

pytestmark = pytest.mark.e2e
PAGES = [p.title for p in RUN_PAGES[1:]]  # after the Overview, where the server opens


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    from lifelong.__main__ import main

    base = tmp_path_factory.mktemp("portable-e2e")
    data = base / "mnist"
    data.mkdir()
    make_dir(data, n_train=40, n_test=24)
    tasks = f"mnist:path={data},mnist:path={data}:invert"
    out = base / "runs" / "gone"
    args = ["train", "--model", "lmvae", "--tasks", tasks, "--epochs", "1", "--out", str(out)]
    args += ["--device", "cpu", "--set", "latent_dim=2", "--set", "hidden=16"]
    assert main([*args, "--set", "channels=4"]) == 0
    shutil.rmtree(data)  # the dataset is gone: only the run's stored images are left
    with serve(str(base / "runs"), base) as url:
        yield url


def test_every_page_opens_without_the_dataset(url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            main = page.locator("[data-testid=stMain]")
            expect(main.locator("h1")).to_have_text("gone")
            expect(main.get_by_text("stored 24 test images").first).to_be_visible()
            no_errors(page)
            for title in PAGES:
                main = open_page(page, title)
                shown = main.locator(
                    "[data-testid=stImage] img, [data-testid=stPlotlyChart],"
                    " [data-testid=stAlertContentInfo]"
                )
                expect(shown.first).to_be_visible()
                no_errors(page)
        finally:
            browser.close()
