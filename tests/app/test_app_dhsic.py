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


def test_bandwidth_heuristic_choice(page):
    """The R dHSIC package's heuristic by default, said in the caption; 'distance' (sqrt(2)
    wider kernels) on request, and the figures follow."""
    radio = page.radio(key="dh_heuristic")
    assert radio.options == [
        "dHSIC package: sqrt(median squared distance / 2)",
        "median distance (√2 wider)",
    ]
    assert radio.value == "dhsic"
    assert any("R dHSIC package" in c.value and "dHSIC::dhsic" in c.value for c in page.caption)
    bw_dhsic = next(c.value for c in page.caption if c.value.startswith("HSIC "))
    assert "(dhsic heuristic)" in bw_dhsic
    radio.set_value("distance").run()
    assert not page.exception, page.exception
    assert any("√2 wider than the R dHSIC" in c.value for c in page.caption)
    bw_dist = next(c.value for c in page.caption if c.value.startswith("HSIC "))
    assert "(distance heuristic)" in bw_dist

    def widths(text):
        return [float(v) for v in text.split(") ")[-1].split(", ")]

    ratios = [a / b for a, b in zip(widths(bw_dist), widths(bw_dhsic), strict=True)]
    assert all(1.2 < r < 1.6 for r in ratios), ratios  # ~sqrt(2)


def test_beside_another_run(page):
    box = page.selectbox(key="dh_other")
    assert "bad/tiny-corrupt" in box.options
    box.set_value("bad/tiny-corrupt").run()
    # the corrupt run's last snapshot fails its checksum: said plainly, this run still shows
    assert not page.exception
    assert any("checksum" in e.value for e in page.error)
    assert len(page.get("plotly_chart")) == 2
