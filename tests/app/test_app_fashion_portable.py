"""The shipped Fashion-MNIST runs on a machine without the Debian package (issue 15: the app
shows them all there too): every page opens from the runs' stored evaluation images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP
from tests.app.test_app_families import every_page_opens

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"


@pytest.mark.parametrize("name", ["lmvae-fashion5", "cpvae-fashion10"])
def test_fashion_run_opens_without_the_dataset(name, v2_navigation, monkeypatch, tmp_path):
    from lifelong.data.registry import REGISTRY

    absent = dataclasses.replace(REGISTRY["fashion"], default_path=str(tmp_path / "absent"))
    monkeypatch.setitem(REGISTRY, "fashion", absent)
    monkeypatch.setenv("LIFELONG_RUN_ROOTS", str(PRETRAINED))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.selectbox(key="run_label").set_value(f"pretrained/{name}").run()
    assert not at.exception
    # the dataset is gone for this process: its stored sample is what the pages get
    from lifelong import evaldata, runs

    _, notes = evaldata.test_sets(runs.open_run(PRETRAINED / name), lambda spec: True)
    assert notes and all("stored 256 test images (the dataset is not on" in n for n in notes)
    every_page_opens(at, name)
