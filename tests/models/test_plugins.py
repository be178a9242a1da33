"""Families from outside the project (lifelong.models.plugins): named on the command line,
listed through an entry point or LIFELONG_PLUGINS, and never imported from a run's manifest."""

import json
import subprocess
import sys

import pytest

from lifelong import models, runs
from lifelong.__main__ import main
from lifelong.models import plugins

PATH = "tests.plugins.tinyfamily:TinyFamily"
NETS = ["--set", "latent_dim=2", "--set", "hidden=16", "--set", "channels=4"]


@pytest.fixture
def clean_registry():
    keep = dict(models.REGISTRY)
    yield
    models.REGISTRY.clear()
    models.REGISTRY.update(keep)


@pytest.fixture
def plugin_run(tmp_path, clean_registry):
    out = tmp_path / "plugin-run"
    args = ["train", "--model", PATH, "--tasks", "digits:classes=0-1,digits:classes=2-3"]
    assert main([*args, "--epochs", "1", "--device", "cpu", "--out", str(out), *NETS]) == 0
    return out


def test_a_class_named_on_the_command_line_trains_and_opens(plugin_run):
    run = runs.open_run(plugin_run)
    assert run.family == PATH and type(run.load_model()).__name__ == "TinyFamily"


def test_its_run_elsewhere_says_the_plugin_is_missing_without_importing_it(plugin_run):
    """A fresh process: the manifest names a module; opening the run must not import it."""
    code = (
        "import sys\nfrom lifelong import runs\n"
        f"try:\n    runs.open_run({str(plugin_run)!r})\n"
        "except runs.RunError as e:\n    print(e)\n"
        "print('imported' if 'tests.plugins.tinyfamily' in sys.modules else 'not imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "is a plugin that is not installed here" in out and "not imported" in out


def test_a_manifest_never_imports_what_it_names(tiny_run, tmp_path):
    import shutil

    out = tmp_path / "hostile"
    shutil.copytree(tiny_run, out)
    m = json.loads((out / "manifest.json").read_text())
    m["family"] = "os:system"
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runs.RunError, match="not installed here"):
        runs.open_run(out)


def test_lifelong_plugins_makes_it_known_to_every_process(plugin_run, monkeypatch):
    models.REGISTRY.pop(PATH, None)
    monkeypatch.setenv(plugins.ENV, PATH)
    assert PATH in models.keys()
    assert runs.open_run(plugin_run).load_model().family == "tinyfamily"


def test_an_entry_point_registers_a_family(monkeypatch, clean_registry):
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="tiny", value=PATH, group=plugins.GROUP)
    monkeypatch.setattr(plugins, "installed", lambda: {"tiny": ep})
    assert "tiny" in models.keys() and "tiny" in models.known() and PATH in models.known()
    assert models.family("tiny")[0].__name__ == "TinyFamily"


@pytest.mark.parametrize(
    "path, message",
    [
        ("tests.plugins.tinyfamily:NotAFamily", "not a subclass"),
        ("tests.plugins.tinyfamily:Nothing", "has no Nothing"),
        ("no_such_package.mod:Model", "cannot import"),
        ("not a:path", "family key or package.module:Class"),
        ("nosuchfamily", "or package.module:Class for a family of your own"),
    ],
)
def test_a_bad_plugin_is_one_line(path, message, clean_registry, capsys, tmp_path):
    args = ["train", "--model", path, "--tasks", "digits", "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not (tmp_path / "x").exists()
