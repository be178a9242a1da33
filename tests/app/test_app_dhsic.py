"""AppTest of the dHSIC heatmap page on the tiny L-MVAE run."""

from __future__ import annotations

import pytest


@pytest.fixture
def page(app):
    app.switch_page("views/dhsic.py").run()
    assert not app.exception, app.exception
    return app


def test_heatmap_pair_scatter_and_controls(page):
    assert [t.value for t in page.title] == ["dHSIC heatmap"]
    assert len(page.get("plotly_chart")) == 2  # the heatmap and the chosen pair's codes
    assert any("joint dHSIC" in m.value for m in page.markdown)
    page.selectbox(key="dh_task").set_value(0).run()
    page.number_input(key="dh_n").set_value(128).run()
    page.select_slider(key="dh_scale").set_value(2.0).run()
    page.toggle(key="dh_norm").set_value(False).run()
    assert not page.exception, page.exception
    assert len(page.get("plotly_chart")) == 2


def test_beside_another_run(page):
    box = page.selectbox(key="dh_other")
    assert "bad/tiny-corrupt" in box.options
    box.set_value("bad/tiny-corrupt").run()
    # the corrupt run's last snapshot fails its checksum: said plainly, this run still shows
    assert not page.exception
    assert any("checksum" in e.value for e in page.error)
    assert len(page.get("plotly_chart")) == 2
