"""Every page opens on a tiny run of every registered family, and says plainly what a family
lacks instead of failing (DESIGN.md: every page works with every family that has the
capability it needs)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lifelong.models import REGISTRY
from pagelist import RUN_PAGES
from tests.app.conftest import APP

PAGES = [p.path for p in RUN_PAGES]
OTHERS = sorted(set(REGISTRY) - {"lmvae"})  # lmvae: the other app tests


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    """One tiny two-task run per family (1 epoch, small networks) under one root."""
    from lifelong.__main__ import main

    root = tmp_path_factory.mktemp("families")
    for fam in OTHERS:
        args = ["train", "--model", fam, "--tasks", "digits:classes=0-4,digits:classes=5-9"]
        args += ["--epochs", "1", "--device", "cpu", "--out", str(root / fam)]
        args += ["--set", "latent_dim=4", "--set", "hidden=32", "--set", "channels=8"]
        assert main(args) == 0, fam
    return root


@pytest.mark.parametrize("family", OTHERS)
def test_every_page_opens(family, family_runs, v2_navigation, monkeypatch):
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(family_runs))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.selectbox(key="run_label").set_value(f"{family_runs.name}/{family}").run()
    assert not at.exception, (family, at.exception)
    every_page_opens(at, family)


def every_page_opens(at, what: str) -> None:
    """Switch `at` to each page in turn: no exception, no error block, and something shown (a
    picture, a chart, or a plain statement of what the run's family lacks)."""
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (what, page, at.exception)
        assert not at.error, (what, page, [e.value for e in at.error])
        assert at.get("image") or at.get("plotly_chart") or at.info, (what, page)
