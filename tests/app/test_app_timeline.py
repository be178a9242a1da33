"""AppTest of the Expert timeline page on the tiny L-MVAE run."""

from __future__ import annotations

import pytest


@pytest.fixture
def page(app):
    app.switch_page("views/timeline.py").run()
    assert not app.exception, app.exception
    return app


def test_expert_states_routing_and_epochs(page):
    assert [t.value for t in page.title] == ["Expert timeline"]
    charts = page.get("plotly_chart")
    assert len(charts) == 3  # experts x tasks, routing, per-epoch series
    subs = [s.value for s in page.subheader]
    assert "Where each task's test data goes after task 1" in subs
    assert [b.label for b in page.get("download_button")].count("HTML") == 3


def test_series_choice_and_earlier_snapshot(page):
    ms = page.multiselect(key="tl_series")
    assert "total" in ms.value
    ms.set_value(["rec", "kl"]).run()
    assert not page.exception
    page.select_slider(key="snap-good/tiny").set_value(0).run()
    assert not page.exception
    assert "Where each task's test data goes after task 0" in [s.value for s in page.subheader]
