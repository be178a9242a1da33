"""AppTest of the Compare experts page on the tiny L-MVAE run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lifelong.explore.images import HIGHLIGHT


@pytest.fixture
def page(app):
    app.switch_page("views/experts.py").run()
    assert not app.exception, app.exception
    return app


def expert_rows(at):
    return [im for im in at.get("image") if im.captions and im.captions[0].startswith("expert ")]


def test_a_row_per_expert_with_the_routed_one_framed(page, media):
    rows = expert_rows(page)
    assert len(rows) == 2  # the tiny run has 2 experts
    routed = [int(im.captions[0].split("routed ")[1].split("/")[0]) for im in rows]
    assert sum(routed) == 8  # each input is routed to exactly one expert
    for im, r in zip(rows, routed, strict=True):
        img = media(im.value[0])
        red = (img == np.array(HIGHLIGHT, dtype=np.uint8)).all(-1).any()
        assert red == (r > 0)
    assert any("holds task" in im.captions[0] for im in rows)


def test_inputs_samples_mismatch_and_scores(page, media):
    caps = [c for im in page.get("image") for c in im.captions]
    assert "inputs" in caps
    assert any(c.startswith("one row per expert") for c in caps)
    (mis,) = [im for im in page.get("image") if im.captions[0].startswith("row i")]
    assert media(mis.value[0]).shape[:2] == (2 * 84 + 3 * 2, 2 * 84 + 3 * 2)  # 2x2 grid
    assert len(page.get("plotly_chart")) == 1


def test_other_task_and_images(page):
    page.selectbox(key="ex_task").set_value(1).run()
    page.number_input(key="ex_n").set_value(4).run()
    assert not page.exception
    rows = expert_rows(page)
    assert all(im.captions[0].endswith("/4") for im in rows)


def _count_calls(monkeypatch) -> dict:
    from lifelong.explore import experts

    calls = {"scores_per_task": 0, "through_every_expert": 0, "expert_samples": 0}
    for name in calls:
        real = getattr(experts, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(experts, name, counted)
    return calls


def _heatmap(at) -> list:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)["data"][0]["z"]


@pytest.mark.parametrize("stored", [True, False], ids=["stored table", "made before it"])
def test_reruns_and_other_inputs_reuse_the_cached_computations(app, monkeypatch, stored):
    """Each expert's ELBO on every task (T x K x 256 ELBOs: 3 s at 10 x 10) is read from the
    table the trainer stored with the snapshot, or, for a run made before it, computed once
    per snapshot; the rows once per input choice: a rerun computes nothing again, other inputs
    only their rows, and the page shows the same figures."""
    import streamlit as st

    from lifelong.explore import experts

    if not stored:
        monkeypatch.setattr(experts, "stored_scores", lambda *a: None)
    calls = _count_calls(monkeypatch)
    st.cache_data.clear()
    app.switch_page("views/experts.py").run()
    assert not app.exception, app.exception
    first = [im.captions[0] for im in expert_rows(app)]
    table = 0 if stored else 1
    assert calls == {"scores_per_task": table, "through_every_expert": 1, "expert_samples": 1}
    app.run()
    assert [im.captions[0] for im in expert_rows(app)] == first
    assert calls == {"scores_per_task": table, "through_every_expert": 1, "expert_samples": 1}
    app.selectbox(key="ex_task").set_value(1).run()
    assert not app.exception, app.exception
    assert calls == {"scores_per_task": table, "through_every_expert": 2, "expert_samples": 1}
    assert len(app.get("plotly_chart")) == 1


def test_the_stored_table_shows_what_the_page_computed(app, monkeypatch):
    """The heatmap from the trainer's table has the figures the page computes without it."""
    import streamlit as st

    from lifelong.explore import experts

    st.cache_data.clear()
    app.switch_page("views/experts.py").run()
    assert not app.exception, app.exception
    shown = np.array(_heatmap(app), dtype=float)
    monkeypatch.setattr(experts, "stored_scores", lambda *a: None)
    st.cache_data.clear()
    app.run()
    assert not app.exception, app.exception
    computed = np.array(_heatmap(app), dtype=float)
    assert shown.shape == computed.shape == (2, 2)  # experts x tasks (or tasks x experts)
    np.testing.assert_allclose(shown, computed, rtol=1e-5, atol=1e-3)
