"""AppTest of the Generation grid page on the tiny L-MVAE run (experts along the columns)."""

from __future__ import annotations

import pytest


@pytest.fixture
def page(app):
    app.switch_page("views/generation.py").run()
    assert not app.exception, app.exception
    return app


def the_grid(at):
    (im,) = [im for im in at.get("image") if im.captions[0].startswith("columns:")]
    return im


def test_experts_along_columns_and_rows_follow_the_controls(page, media):
    im = the_grid(page)
    assert im.captions[0].startswith("columns: expert 0, expert 1; rows: z0[0]")
    assert media(im.value[0]).shape[:2] == (7 * 56 + 8 * 2, 2 * 56 + 3 * 2)
    page.slider(key="gg_rows").set_value(4).run()
    assert media(the_grid(page).value[0]).shape[0] == 4 * 56 + 5 * 2
    before = media(the_grid(page).value[0])
    page.selectbox(key="gg_var").set_value(("z0", 2)).run()
    assert not page.exception
    assert (media(the_grid(page).value[0]) != before).any()
    page.slider(key="gg_range").set_value((-1.0, 1.0)).run()
    assert "from -1.0 to +1.0" in the_grid(page).captions[0]
    assert {"PNG", "GIF (rows as frames)"} <= {b.label for b in page.get("download_button")}
