"""AppTest of the Compare experts page on the tiny L-MVAE run."""

from __future__ import annotations

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
