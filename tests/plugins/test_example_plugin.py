"""The example plugin (examples/betavae, installed by requirements.txt's `-e ./examples/betavae`)
passes the whole conformance kit, the library's half and the app's, as a plugin author's
own suite would run it, and trains from the command line under its entry-point name."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from app_conformance import check_pages
from lifelong import models, runs
from lifelong.__main__ import main
from lifelong.testing import check_family

NETS = {"latent_dim": 3, "hidden": 32}


@pytest.fixture(autouse=True)
def installed():
    names = [ep.name for ep in entry_points(group="lifelong.families")]
    assert "betavae" in names, "pip install -r requirements.txt installs examples/betavae"
    keep = dict(models.REGISTRY)
    yield
    models.REGISTRY.clear()
    models.REGISTRY.update(keep)


def test_the_example_passes_the_kit_and_opens_on_every_page(tmp_path):
    run_dir = check_family("betavae", tmp_path, NETS)
    run = runs.open_run(run_dir)
    active = [e for e in run.events if e.kind == "betavae_active_units"]
    assert [e.task for e in active] == [0, 1] and all(len(e.kl) == 3 for e in active)
    assert "latent variables active" in active[0].describe()
    assert len(check_pages(run_dir)) >= 10


def test_the_readme_command_trains_it(tmp_path, capsys):
    out = tmp_path / "beta"
    args = ["train", "--model", "betavae", "--tasks", "digits:classes=0-4,digits:classes=5-9"]
    args += ["--epochs", "1", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--set", "latent_dim=3", "--set", "hidden=32"]) == 0
    run = runs.open_run(out)
    assert run.family == "betavae" and run.snapshots == [0, 1]
    assert run.metric("mse") and len(run.metric("mse")[-1]) == 2
