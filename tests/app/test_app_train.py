"""AppTest of the Train page: a real job started from the widgets, watched to its end; bad
input shown in one line with nothing started. LIFELONG_TRAIN_ROOT points the jobs at tmp."""

from __future__ import annotations

import time

import pytest

from lifelong.train import jobs


@pytest.fixture
def train_root(tmp_path, monkeypatch):
    root = tmp_path / "trained"
    monkeypatch.setenv(jobs.TRAIN_ROOT_ENV, str(root))
    yield root
    for job in jobs.list_jobs(root):  # nothing outlives the test
        if job.status == "running":
            jobs.cancel(job, grace=2)


@pytest.fixture
def page(train_root, app):
    app.switch_page("views/train.py").run()
    assert not app.exception, app.exception
    return app


def fill(at, tasks: str, name: str):
    at.selectbox(key="tr_family").set_value("vae").run()
    at.text_input(key="tr_tasks").input(tasks)
    for key, value in (("latent_dim", 2), ("hidden", 16), ("channels", 4)):
        at.number_input(key=f"tr_vae_{key}").set_value(value)
    at.number_input(key="tr_epochs").set_value(1)
    at.selectbox(key="tr_device").set_value("cpu")
    at.text_input(key="tr_name").input(name)
    at.run()


def test_start_a_job_watch_it_end_and_pick_its_run(page, train_root):
    assert [t.value for t in page.title] == ["Train"]
    assert any("No jobs yet" in i.value for i in page.info)
    fill(page, "digits:classes=0-1,digits:classes=2-3", "from-app")
    assert not page.error
    page.button(key="tr_start").click().run()
    assert not page.exception, page.exception
    (job,) = jobs.list_jobs(train_root)
    sid = page.query_params["session"]  # the page keeps its session in the address
    assert job.name == "from-app" and job.session == (sid if isinstance(sid, str) else sid[0])
    assert job.family == "vae" and job.epochs == 1 and "latent_dim=2" in job.command
    assert page.get("progress") or page.success  # the panel shows it (fragment's first run)
    deadline = time.monotonic() + 120
    while jobs.poll(job).status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.run()  # AppTest cannot rerun a run_every fragment: render the page once more
    assert not page.exception, page.exception
    assert any("from-app finished" in s.value for s in page.success), page.error
    assert len(page.get("plotly_chart")) == 1  # the loss curves
    captions = [c for im in page.get("image") for c in im.captions]
    assert captions[-2:] == [f"after task {k}: inputs over reconstructions" for k in (0, 1)], (
        captions
    )
    label = "trained/from-app"
    assert label in page.selectbox(key="run_label").options  # in the run picker
    page.selectbox(key="run_label").set_value(label).run()
    assert not page.exception and not page.error


def test_bad_tasks_show_one_line_and_start_nothing(page, train_root):
    fill(page, "digits,nope:classes=1", "bad")
    (err,) = page.error
    assert err.value.startswith("unknown dataset 'nope'; valid names:")
    assert page.button(key="tr_start").disabled  # a browser user cannot press it
    assert not train_root.exists() or not any(train_root.iterdir())
    # a bad option is refused the same way when Start is pressed
    page.text_input(key="tr_tasks").input("digits").run()
    assert not page.error
    page.text_input(key="tr_more").input("latent=3").run()
    page.button(key="tr_start").click().run()
    assert any("unknown option 'latent' for vae" in e.value for e in page.error)
    assert jobs.list_jobs(train_root) == []


def test_dataset_paths_outside_the_data_roots_are_refused(page, train_root, tmp_path, monkeypatch):
    data = tmp_path / "data-root"
    (data / "mnist").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (data / "link").symlink_to(tmp_path / "private")
    monkeypatch.setenv("LIFELONG_DATA_ROOTS", str(data))
    for path in (tmp_path / "private", data / "link", data / ".." / "private"):
        fill(page, f"digits,mnist:path={path}", "outside")
        (err,) = page.error  # one line, and nothing else goes wrong
        assert not page.exception, page.exception
        assert err.value.startswith(f"'mnist': path '{path}' is outside the data roots (")
        assert str(data) in err.value and "LIFELONG_DATA_ROOTS" in err.value
        assert "\n" not in err.value
        assert page.button(key="tr_start").disabled  # a browser user cannot press it
        assert jobs.list_jobs(train_root) == []
    # inside a root, the spec is accepted as before (the files are the trainer's business)
    page.text_input(key="tr_tasks").input(f"mnist:path={data / 'mnist'}").run()
    assert not page.error and not page.button(key="tr_start").disabled
