"""AppTest of the Interpolation page: test images, uploads, and the three decoding modes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def page(app):
    app.switch_page("views/interpolation.py").run()
    assert not app.exception, app.exception
    return app


def strips(at):
    return [im for im in at.get("image") if im.captions and "input" not in im.captions[0]]


def test_one_expert_strip_between_two_tasks(page, media):
    (s,) = strips(page)
    assert s.captions[0].startswith("expert ")
    assert media(s.value[0]).shape[1] == 8 * 84 + 9 * 2  # 8 steps at scale 3
    assert {"PNG", "GIF"} <= {b.label for b in page.get("download_button")}
    page.slider(key="ip_steps").set_value(5).run()
    assert media(strips(page)[0].value[0]).shape[1] == 5 * 84 + 6 * 2


def test_every_expert_and_mismatched(page, media):
    page.radio(key="ip_mode").set_value("every expert").run()
    assert [s.captions[0] for s in strips(page)] == ["expert 0", "expert 1"]
    page.radio(key="ip_mode").set_value("mismatched").run()
    (s,) = strips(page)
    assert s.captions[0] == "encoder 0 → decoder 1"
    page.radio(key="ip_kind").set_value("slerp").run()
    assert not page.exception


def test_upload_converts_or_explains(page, media):
    page.radio(key="ip_src1").set_value("upload").run()
    assert any("Choose a picture" in i.value for i in page.info)
    assert not strips(page)  # nothing to interpolate yet
    buf = io.BytesIO()
    paper = np.full((50, 80, 3), 255, np.uint8)
    paper[15:35, 30:50] = 0  # a dark square on white, RGB, not square
    Image.fromarray(paper).save(buf, format="PNG")
    page.file_uploader(key="ip_up1").set_value(("square.png", buf.getvalue(), "image/png")).run()
    assert not page.exception
    steps = [c.value for c in page.caption if c.value.startswith("read PNG 80x50 RGB")]
    assert steps and "inverted (light background)" in steps[0]
    (s,) = strips(page)
    last = media(s.value[0])[:, -86:]  # the last step decodes the uploaded image
    assert last.shape[0] == 84 + 4
    page.file_uploader(key="ip_up1").set_value(("notes.txt", b"hello", "text/plain")).run()
    assert not page.exception
    assert any(e.value.startswith("notes.txt: not a readable image") for e in page.error)
    assert not strips(page)
