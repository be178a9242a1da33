"""AppTest of the Compare runs page: the shipped runs over one sequence ranked, exports, curves
and the same inputs through every run; two tiny runs a user picks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lifelong import metrics
from tests.app.conftest import APP

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
SEQUENCE = [
    "ewc-digits-glyphs-shapes",
    "lgm-digits-glyphs-shapes",
    "lmvae-digits-glyphs-shapes",
    "mvae-beta0-digits-glyphs-shapes",
    "mvae-beta10-digits-glyphs-shapes",
    "vae-digits-glyphs-shapes",
    "vae-joint-digits-glyphs-shapes",
]


@pytest.fixture
def shipped(v2_navigation, monkeypatch):
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(PRETRAINED))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    return at


def board(at):
    return at.dataframe[0].value


def test_the_shipped_runs_over_one_sequence_are_ranked(shipped):
    at = shipped
    assert [t.value for t in at.title] == ["Compare runs"]
    assert sorted(at.multiselect(key="cmp_runs").value) == [f"pretrained/{n}" for n in SEQUENCE]
    table = board(at)
    assert len(table) == len(SEQUENCE) and "mse acc" in table and "frechet acc" in table
    by_run = table.set_index("run")
    # the claims of the papers, as the leaderboard states them: L-MVAE forgets far less than
    # the fine-tuned VAE; the fine-tuned VAE has the worst final MSE of the lifelong runs
    lmvae, vae = (
        by_run.loc["pretrained/lmvae-digits-glyphs-shapes"],
        by_run.loc["pretrained/vae-digits-glyphs-shapes"],
    )
    assert lmvae["mse forgetting"] < vae["mse forgetting"] / 10
    assert by_run["mse acc"].idxmax() == "pretrained/vae-digits-glyphs-shapes"
    # joint training has no sequence: no forgetting figure
    assert by_run.loc["pretrained/vae-joint-digits-glyphs-shapes"].isna()["mse forgetting"]
    assert not at.warning  # one sequence
    # exports: a CSV with every row, a LaTeX table with the best MSE in bold
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert {"CSV", "LaTeX", "PNG", "HTML"} <= set(downloads)
    assert len(at.get("imgs") or at.get("image")) >= len(SEQUENCE) + 1  # inputs + a row each


def test_curves_and_snapshot_step_every_run_together(shipped):
    at = shipped
    at.selectbox(key="cmp_curve").set_value("frechet").run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == len(SEQUENCE)
    assert spec["layout"]["yaxis"]["title"]["text"] == metrics.label("frechet")
    at.select_slider(key="cmp_snap").set_value(0).run()
    assert not at.exception
    # the joint run has no snapshot after task 0: said, not drawn
    assert any("vae-joint" in c.value and "no snapshot" in c.value for c in at.caption)


def test_two_runs_a_user_picks(app):
    app.switch_page("views/compare.py").run()
    assert not app.exception
    picker = app.multiselect(key="cmp_runs")
    assert "good/tiny" in picker.options
    picker.set_value(["good/tiny", "bad/tiny-corrupt"]).run()
    assert not app.exception
    assert len(board(app)) == 2
    # the corrupt run's last snapshot fails its checksum: a warning, the other run still shows
    assert any("checksum" in w.value for w in app.warning)
    picker.set_value(["good/tiny"]).run()
    assert any("two or more" in i.value for i in app.info)


def test_figures_download_as_html_that_opens_offline():
    """plotly.js inline, not from a CDN: the file opens on a machine with no network."""
    import plotly.graph_objects as go

    import ui

    html = ui.figure_html(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])))
    import re

    assert not re.findall(r"<script[^>]*src=", html)  # nothing fetched when opened
    assert len(html) > 1_000_000 and "Plotly.newPlot" in html
