"""Runs from elsewhere (issue 14): a run whose dataset is gone shows every page from its
stored evaluation images; a run's dataset path outside the data roots is never read; a
malformed run beside good ones breaks nothing; opening a folder opens it; an unknown ?run=
link says so."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.app.test_app_families import every_page_opens
from tests.data.test_data_idx import make_dir

NETS = ["--set", "latent_dim=2", "--set", "hidden=16", "--set", "channels=4"]
MALFORMED = {
    "entry-is-a-string": lambda m: m.update(snapshots=["task-00.safetensors"]),
    "snapshots-not-a-list": lambda m: m.update(snapshots="task-00.safetensors"),
    "no-after-task": lambda m: [s.pop("after_task") for s in m["snapshots"]],
    "latent-dim-abc": lambda m: m["config"].update(latent_dim="abc"),
    "escapes": lambda m: m["snapshots"][0].update(file="../good/task-00.safetensors"),
    "huge-hidden": lambda m: m["config"].update(hidden=150000),
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """<base>/portable/gone: an L-MVAE on a tiny MNIST folder that was then deleted;
    <base>/portable/moved: the same data, whose folder now holds other (blank) images;
    <base>/portable/<malformed>: copies of `gone` with one manifest defect each."""
    from lifelong.__main__ import main

    base = tmp_path_factory.mktemp("portable")
    root = base / "portable"
    runs = {}
    for name in ("gone", "moved"):
        data = base / f"mnist-{name}"
        data.mkdir()
        make_dir(data, n_train=40, n_test=24)
        tasks = f"mnist:path={data},mnist:path={data}:invert"
        out = root / name
        args = ["train", "--model", "lmvae", "--tasks", tasks, "--epochs", "1", "--out", str(out)]
        assert main([*args, "--device", "cpu", *NETS]) == 0
        runs[name] = (out, data)
    shutil.rmtree(runs["gone"][1])
    moved = runs["moved"][1]
    for f in moved.iterdir():  # same files, blank images: what a read of the path would show
        if "images" in f.name:
            raw = bytearray(f.read_bytes())
            raw[16:] = bytes([255]) * (len(raw) - 16)
            f.write_bytes(bytes(raw))
    for name, damage in MALFORMED.items():
        out = root / name
        shutil.copytree(runs["gone"][0], out)
        m = json.loads((out / "manifest.json").read_text())
        damage(m)
        (out / "manifest.json").write_text(json.dumps(m))
    return {"root": root, "moved": moved}


def start(monkeypatch, roots, **env):
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(roots["root"]))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def pick(at, label):
    at.selectbox(key="run_label").set_value(label).run()
    assert not at.exception, at.exception


def test_a_run_whose_dataset_is_gone_shows_every_page(monkeypatch, roots, v2_navigation):
    at = start(monkeypatch, roots)
    pick(at, "portable/gone")
    assert any("stored 24 test images" in c.value for c in at.caption)
    every_page_opens(at, "gone")


def test_a_dataset_path_outside_the_data_roots_is_not_read(
    monkeypatch, roots, v2_navigation, media
):
    at = start(monkeypatch, roots)
    pick(at, "portable/moved")
    assert any("not read here" in c.value for c in at.caption)
    first = media(at.get("image")[0].value[0])  # task 0 test images, from the run
    assert first.mean() < 200  # the folder's blank images would be white

    # the same folder under a configured data root is read (and is blank now)
    at = start(monkeypatch, roots, LIFELONG_DATA_ROOTS=str(roots["moved"].parent))
    pick(at, "portable/moved")
    assert not any("test images" in c.value.lower() for c in at.caption)


@pytest.mark.parametrize(
    "page", ["views/forgetting.py", "views/dhsic.py", "views/sharedprivate.py"]
)
def test_malformed_runs_break_no_page_of_a_good_run(monkeypatch, roots, v2_navigation, page):
    at = start(monkeypatch, roots)
    pick(at, "portable/gone")
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not at.main.error, [e.value for e in at.main.error]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_run_is_one_line(monkeypatch, roots, v2_navigation, name):
    at = start(monkeypatch, roots)
    pick(at, f"portable/{name}")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and name in errors[0] and "\n" not in errors[0], errors
    assert "passwd" not in errors[0]


def test_opening_a_folder_opens_it(monkeypatch, roots, v2_navigation, tiny_run, tmp_path):
    at = start(monkeypatch, roots)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_run, elsewhere)
    at.text_input(key="other_run").input(str(elsewhere)).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="run_label").value == str(elsewhere)
    assert [t.value for t in at.title] == ["elsewhere"]
    at.text_input(key="other_run").input(str(tmp_path)).run()
    assert any("manifest.json" in e.value for e in at.sidebar.error)


def test_an_unknown_run_link_says_so(monkeypatch, roots, v2_navigation):
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(roots["root"]))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["run"] = "nowhere/such-run"
    at.run()
    assert not at.exception
    assert any("no such run" in w.value for w in at.sidebar.warning)


def test_stored_images_match_the_run_file(roots):
    from lifelong import evaldata, runs

    run = runs.open_run(roots["root"] / "gone")
    sets, notes = evaldata.test_sets(run)
    assert len(notes) == 2 and np.isfinite(sets[0].x.numpy()).all()
