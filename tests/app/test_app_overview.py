"""AppTest of the entry point and the Overview page on a tiny trained run."""

from __future__ import annotations

GOOD, BROKEN, CORRUPT = "good/tiny", "bad/tiny-broken", "bad/tiny-corrupt"  # conftest.py


def test_default_page_is_overview(app):
    assert [t.value for t in app.title] == ["tiny"]
    assert not app.error
    picker = app.selectbox(key="run_label")
    assert picker.value == GOOD
    assert set(picker.options) == {GOOD, BROKEN, CORRUPT}
    assert len(app.get("plotly_chart")) == 1
    # one originals-over-reconstructions grid per task, from the last snapshot
    images = app.get("image")
    assert len(images) == 2
    assert all(url.startswith("/mock/media/") for im in images for url in im.value)
    assert any("after task 1" in s.value for s in app.subheader)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Family"] == "lmvae"
    assert metrics["Latent dim"] == "4"


def test_every_forgetting_matrix_renders(app):
    for option in ["mse", "elbo", "routing_accuracy"]:
        app.radio[0].set_value(option).run()
        assert not app.exception, (option, app.exception)
        assert app.get("plotly_chart") or app.info


def test_earlier_snapshot(app, media):
    last = [media(url) for im in app.get("image") for url in im.value]
    app.select_slider(key=f"snap-{GOOD}").set_value(0).run()
    assert not app.exception
    assert any("after task 0" in s.value for s in app.subheader)
    first = [media(url) for im in app.get("image") for url in im.value]
    assert len(first) == len(last) == 2
    # task 1 is reconstructed by a different model after task 0 than after task 1
    assert any(a.shape != b.shape or (a != b).any() for a, b in zip(first, last, strict=True))


def test_a_link_opens_its_run_and_the_address_follows_the_picker(run_roots, v2_navigation):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import APP

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["run"] = CORRUPT
    at.run()
    assert at.selectbox(key="run_label").value == CORRUPT
    at.selectbox(key="run_label").set_value(GOOD).run()
    assert at.query_params["run"] in (GOOD, [GOOD])
    # an unknown run in the address is ignored: the first run opens
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["run"] = "no/such-run"
    at.run()
    assert at.selectbox(key="run_label").value == GOOD and not at.exception
