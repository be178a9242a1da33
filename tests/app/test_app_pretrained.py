"""Every page on every shipped run in pretrained/ (issue: every view x every pretrained run):
no exception and no error block; each page shows a picture, a chart, or says plainly what the
run's family lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lifelong import runs
from tests.app.conftest import APP
from tests.app.test_app_families import every_page_opens

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
RUNS = sorted(p.name for p in runs.find_runs(PRETRAINED))


@pytest.mark.parametrize("name", RUNS)
def test_every_page_opens_on_the_shipped_run(name, v2_navigation, monkeypatch):
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(PRETRAINED))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.selectbox(key="run_label").set_value(f"pretrained/{name}").run()
    assert not at.exception, (name, at.exception)
    every_page_opens(at, name)
