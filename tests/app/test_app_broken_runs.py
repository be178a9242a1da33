"""A corrupt run folder gets a clear message naming the file; the other runs stay usable."""

from __future__ import annotations

GOOD, BROKEN, CORRUPT = "good/tiny", "bad/tiny-broken", "bad/tiny-corrupt"  # see conftest.py


def choose(at, label):
    at.selectbox(key="run_label").set_value(label).run()
    assert not at.exception, at.exception


def test_truncated_snapshot_is_reported_and_good_run_still_works(app):
    choose(app, BROKEN)
    errors = [e.value for e in app.sidebar.error]
    assert len(errors) == 1
    assert "tiny-broken" in errors[0] and "task-00.safetensors" in errors[0]
    assert "truncated" in errors[0]
    assert not app.title  # no half-rendered page
    assert [i.value for i in app.info] == ["Pick a run with a finished snapshot in the sidebar."]

    app.switch_page("views/traversal.py").run()
    assert not app.exception
    assert any("task-00.safetensors" in e.value for e in app.sidebar.error)
    assert not app.slider

    choose(app, GOOD)
    assert not app.error
    assert [t.value for t in app.title] == ["Latent traversal"]
    assert app.slider


def test_altered_snapshot_fails_its_checksum(app):
    choose(app, CORRUPT)
    errors = [e.value for e in app.main.error]
    assert len(errors) == 1
    assert "task-01.safetensors" in errors[0] and "checksum" in errors[0]
    assert not app.get("image")

    # snapshot 0 reads task-00 only, which is intact
    app.select_slider(key=f"snap-{CORRUPT}").set_value(0).run()
    assert not app.exception
    assert not app.error
    assert [t.value for t in app.title] == ["tiny-corrupt"]
    assert len(app.get("image")) == 2

    choose(app, GOOD)
    assert not app.error
    assert [t.value for t in app.title] == ["tiny"]
