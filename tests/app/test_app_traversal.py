"""AppTest of the Latent traversal page: sliders, live decoding, expert choice, exports."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from lifelong import runs
from lifelong.explore import traversal


@pytest.fixture
def page(app):
    app.switch_page("views/traversal.py").run()
    assert not app.exception, app.exception
    return app


@pytest.fixture(scope="module")
def model(run_roots):
    return runs.open_run(run_roots["good"]).load_model()


def latent_sliders(at):
    return [s for s in at.slider if s.key != "tv_nvalues"]


def decoded(at, media) -> np.ndarray:
    """The live decoder's pixels: its image travels as a data: URL (no media file)."""
    (image,) = [im for im in at.get("image") if im.captions == ["decoded"]]
    url = image.value[0]
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def expert_caption(at) -> str:
    (text,) = [c.value for c in at.caption if c.value.startswith("Decoding through expert")]
    return text


def test_renders_one_slider_per_latent_variable(page, model):
    assert [t.value for t in page.title] == ["Latent traversal"]
    assert not page.error
    expert = int(re.search(r"expert (\d+) \(selected by eq\. 7\)", expert_caption(page))[1])
    dims = sum(b.dim for b in traversal.blocks_for(model, expert))
    sliders = latent_sliders(page)
    assert len(sliders) == dims == 4
    assert all(s.min == -3 and s.max == 3 for s in sliders)
    captions = [c for im in page.get("image") for c in im.captions]
    assert "decoded" in captions and "input" in captions


def test_moving_a_slider_changes_the_decoded_image(page, media):
    before = decoded(page, media)
    slider = latent_sliders(page)[0]
    others = [s.value for s in latent_sliders(page)[1:]]
    target = 3.0 if slider.value < 0 else -3.0
    slider.set_value(target).run()
    assert not page.exception
    assert latent_sliders(page)[0].value == pytest.approx(target)
    assert [s.value for s in latent_sliders(page)[1:]] == others
    after = decoded(page, media)
    assert after.shape == before.shape
    assert np.abs(after.astype(int) - before.astype(int)).max() > 0


def test_download_buttons(page, media):
    buttons = {b.label: b for b in page.get("download_button")}
    assert set(buttons) == {"Download PNG", "Download GIF"}
    from_url = {label: b.proto.url for label, b in buttons.items()}
    png = media(from_url["Download PNG"])
    assert png.ndim == 3 and png.shape[2] == 3
    assert media(from_url["Download GIF"]).size > 0


def test_sweep_grid_follows_the_number_of_values(page, media):
    def grid_width():
        (im,) = [im for im in page.get("image") if im.captions[0].startswith("rows, top to bottom")]
        return media(im.value[0]).shape[1]

    wide = grid_width()
    page.slider(key="tv_nvalues").set_value(5).run()
    assert not page.exception
    assert grid_width() < wide


def sweep_grid(page):
    (im,) = [im for im in page.get("image") if im.captions[0].startswith("rows, top to bottom")]
    return im


def test_rows_ordered_by_kl_and_the_posterior_range(page, media):
    caption = sweep_grid(page).captions[0]
    kls = [float(v) for v in re.findall(r"KL (-?[0-9.]+)", caption)]
    assert len(kls) == 4 and kls == sorted(kls, reverse=True)  # most informative first
    prior = media(sweep_grid(page).value[0])
    page.radio(key="tv_order").set_value("index").run()
    names = re.findall(r"(z\d\[\d\])", sweep_grid(page).captions[0])
    assert names == sorted(names)
    page.radio(key="tv_range").set_value("posterior min–max").run()
    assert not page.exception
    assert "each variable's own min..max" in sweep_grid(page).captions[0]
    assert (media(sweep_grid(page).value[0]) != prior).any()


def test_choose_expert_by_hand(page, media, model):
    box = page.selectbox(key="tv_expert")
    assert box.options[0] == "routed (eq. 7)"
    images = {}
    for expert in model.experts():
        page.selectbox(key="tv_expert").set_value(expert).run()
        assert not page.exception
        assert expert_caption(page) == f"Decoding through expert {expert} (chosen by hand)."
        dims = sum(b.dim for b in traversal.blocks_for(model, expert))
        assert len(latent_sliders(page)) == dims
        images[expert] = decoded(page, media)
    assert len(images) == 2
    assert (images[0] != images[1]).any()


def test_prior_sample_source(page, media):
    page.selectbox(key="tv_source").set_value("prior sample").run()
    assert not page.exception
    assert not page.error
    assert "Decoding through expert" in expert_caption(page)
    captions = [c for im in page.get("image") for c in im.captions]
    assert "decoded" in captions and "input" not in captions
    first = [s.value for s in latent_sliders(page)]
    image = decoded(page, media)
    page.number_input(key="tv_index").set_value(1).run()  # the seed of the prior draw
    assert not page.exception
    second = [s.value for s in latent_sliders(page)]
    assert len(first) == len(second) == 4
    assert first != second
    assert (decoded(page, media) != image).any()


def test_other_task_and_snapshot(page):
    page.selectbox(key="tv_task").set_value(1).run()
    assert not page.exception
    page.select_slider(key="snap-good/tiny").set_value(0).run()
    assert not page.exception
    assert not page.error
    assert latent_sliders(page)
