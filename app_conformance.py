"""The app's half of the conformance kit (lifelong/testing.py has the library's half): every
page of the app opens on a run with no exception and no error, and shows something (a
picture, a chart, or a plain statement of what the run's family lacks).

A plugin author runs it on the tiny run `check_family` returns:

    from lifelong.testing import check_family
    from app_conformance import check_pages

    def test_my_family(tmp_path):
        check_pages(check_family("mypackage.model:MyModel", tmp_path))

It needs Streamlit (it drives the app with streamlit.testing's AppTest), so it lives beside
the app, above the library that never imports Streamlit.
"""

from __future__ import annotations

import os
from pathlib import Path

from pagelist import RUN_PAGES

APP = Path(__file__).resolve().parent / "app.py"


class PageError(AssertionError):
    """A page that fails on the run; the message names the page and what it showed."""


def check_pages(run_dir: str | Path, timeout: float = 120) -> list[str]:
    """Open the run in the app and switch to every page that shows a run. Returns the pages
    checked; PageError names the first that raised, showed an error or showed nothing."""
    from streamlit.testing.v1 import AppTest

    run_dir = Path(run_dir).resolve()
    old = os.environ.get("LIFELONG_RUN_ROOTS")
    os.environ["LIFELONG_RUN_ROOTS"] = str(run_dir.parent)
    try:
        at = AppTest.from_file(str(APP), default_timeout=timeout)
        at.run()
        at.selectbox(key="run_label").set_value(f"{run_dir.parent.name}/{run_dir.name}").run()
        _page_ok(at, "the run's selection")
        for page in RUN_PAGES:
            at.switch_page(page.path).run()
            _page_ok(at, page.title)
            if not (at.get("image") or at.get("plotly_chart") or at.info):
                raise PageError(f"{page.title}: shows nothing for {run_dir.name}")
    finally:
        if old is None:
            os.environ.pop("LIFELONG_RUN_ROOTS", None)
        else:
            os.environ["LIFELONG_RUN_ROOTS"] = old
    return [p.title for p in RUN_PAGES]


def _page_ok(at, where: str) -> None:
    if at.exception:
        raise PageError(f"{where}: {at.exception[0].value}"[:500])
    if at.error:
        raise PageError(f"{where}: error shown: {at.error[0].value}"[:500])
