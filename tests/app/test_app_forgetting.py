"""AppTest of the Forgetting page: the time machine, a run beside it, the matrix exports."""

from __future__ import annotations

import pytest

GOOD, CORRUPT = "good/tiny", "bad/tiny-corrupt"  # conftest.py


@pytest.fixture
def page(app):
    app.switch_page("views/forgetting.py").run()
    assert not app.exception, app.exception
    return app


def grids(at) -> list:
    return [
        im for im in at.get("image") if any("inputs / reconstructions" in c for c in im.captions)
    ]


def test_every_task_after_the_last_snapshot(page, media):
    assert [t.value for t in page.title] == ["Forgetting"]
    rows = grids(page)
    assert len(rows) == 2  # one per task
    img = media(rows[0].value[0])
    assert img.shape[0] == 3 * 56 + 4 * 2  # inputs, reconstructions, samples at scale 2
    assert len(page.get("plotly_chart")) == 1
    labels = [b.label for b in page.get("download_button")]
    assert labels.count("PNG") == 2 and "HTML" in labels and "CSV" in labels


def test_time_machine_marks_unseen_tasks_and_changes_the_pictures(page, media):
    last = [media(im.value[0]) for im in grids(page)]
    page.select_slider(key="fg_k-tiny").set_value(0).run()
    assert not page.exception
    rows = grids(page)
    assert "not seen yet" in rows[1].captions[0] and "not seen yet" not in rows[0].captions[0]
    first = [media(im.value[0]) for im in rows]
    assert any((a != b).any() for a, b in zip(first, last, strict=True))


def test_beside_a_run_over_the_same_tasks(page):
    box = page.selectbox(key="fg_base")
    assert box.options == ["none", CORRUPT]  # the broken run does not open; itself excluded
    box.set_value(CORRUPT).run()
    assert not page.exception
    # the corrupt copy's last snapshot fails its checksum: said plainly, this run still shows
    assert any("checksum" in e.value for e in page.error)
    assert len(grids(page)) == 2


def test_every_stored_matrix(page):
    radio = page.radio(key="fg_metric")
    assert radio.options[:2] == ["reconstruction MSE", "ELBO (nats)"]
    for name in radio.options:
        radio.set_value(name).run()
        assert not page.exception and len(page.get("plotly_chart")) == 1


def test_the_matrix_is_shaded_by_which_way_is_better(
    run_roots, tmp_path, monkeypatch, v2_navigation
):
    """One set of definitions (lifelong.metrics): MSE and Fréchet shade low as good, ELBO
    high, on the Forgetting page as on the Overview (the Forgetting page used to treat only
    MSE as lower-is-better)."""
    import json
    import shutil

    from streamlit.testing.v1 import AppTest

    from lifelong import metrics
    from tests.app.conftest import APP

    run = tmp_path / "root" / "with-frechet"
    shutil.copytree(run_roots["good"], run)
    m = json.loads((run / "manifest.json").read_text())
    frechet = {"seen": [4.0, 6.0], "per_task": [[4.0, 9.0], [5.0, 7.0]]}
    m.setdefault("eval", {}).setdefault("metrics", {})["frechet"] = {"value": frechet, "key": {}}
    (run / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(run.parent))

    def shading(at, key) -> dict:
        radio, seen = at.radio(key=key), {}
        for value in radio.options:
            radio.set_value(value).run()
            assert not at.exception, at.exception
            seen[value] = bool(
                json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0].get("reversescale")
            )
        return seen

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    overview = shading(at, "ov_metric")
    at.switch_page("views/forgetting.py").run()
    page = shading(at, "fg_metric")
    for name, lower in (("mse", True), ("elbo", False), ("frechet", True)):
        assert page[metrics.label(name)] is lower and overview[metrics.label(name)] is lower


def test_supervised_runs_show_their_class_accuracy_matrix(monkeypatch, v2_navigation):
    """The shipped supervised L-MVAE: the Overview and Forgetting pages offer its class
    accuracy per task (the trainer's `class_accuracy`), shaded high as good, values as stored."""
    import json
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from lifelong import metrics
    from lifelong.runs import open_run
    from tests.app.conftest import APP

    root = Path(__file__).resolve().parents[2] / "pretrained"
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(root))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.selectbox(key="run_label").set_value("pretrained/lmvae-supervised-digits").run()
    stored = open_run(root / "lmvae-supervised-digits").metric("class_accuracy")
    label = metrics.label("class_accuracy")
    for key, page in (("ov_metric", None), ("fg_metric", "views/forgetting.py")):
        if page:
            at.switch_page(page).run()
        at.radio(key=key).set_value(label).run()
        assert not at.exception, at.exception
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
        assert not spec.get("reversescale")  # higher is better
        shown = [[v for v in row if v is not None] for row in spec["z"]]
        assert shown[-1] == pytest.approx(stored[-1], abs=1e-4)
