"""Evaluation data inside the run (lifelong.evaldata): written with the first snapshot, read
back bit-exact as uint8, used by `eval` and the pages when the dataset is gone, checked like
any untrusted file, and added to older runs by `eval --write`."""

import json
import shutil

import numpy as np
import pytest
import torch

from lifelong import evaldata, runs
from lifelong.__main__ import main
from tests.data.test_data_idx import make_dir

NETS = ["--set", "latent_dim=2", "--set", "hidden=16", "--set", "channels=4"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A tiny VAE trained on two tasks of a tiny MNIST folder written here; the folder is
    removed afterwards, as on a machine the run was copied to. Returns (run dir, pixels)."""
    root = tmp_path_factory.mktemp("evaldata")
    data = root / "mnist"
    data.mkdir()
    make_dir(data, n_train=40, n_test=30)
    from lifelong.data import load_task

    spec = f"mnist:path={data}"
    tests = [load_task(spec, "test", 0).x.clone()]
    out = root / "run"
    args = ["train", "--model", "vae", "--tasks", f"{spec},{spec}:invert", "--epochs", "1"]
    assert main([*args, "--out", str(out), "--device", "cpu", *NETS]) == 0
    shutil.rmtree(data)
    return out, tests[0]


def test_the_trainer_stores_every_task_with_the_first_snapshot(mnist_run):
    out, x = mnist_run
    run = runs.open_run(out)
    assert sorted(run.manifest["evaldata"]) == ["0", "1"]
    stored = evaldata.stored(run, 0)
    assert len(stored) == 30  # the whole (tiny) test split: fewer than EVAL_IMAGES
    assert torch.equal(stored.index, torch.arange(30))
    # uint8 on disk: the real images come back exactly
    assert torch.equal(stored.x, x)
    assert torch.allclose(evaldata.stored(run, 1).x, 1 - x, atol=1e-6)
    assert (out / "evaldata-00.safetensors").stat().st_size < 0.5 * 2**20


def test_pages_and_eval_use_it_when_the_dataset_is_gone(mnist_run, capsys):
    out, x = mnist_run
    run = runs.open_run(out)
    sets, notes = evaldata.test_sets(run)
    assert torch.equal(sets[0].x, x)
    assert len(notes) == 2 and "not on this machine" in notes[0]
    assert main(["eval", str(out), "--metrics", "ssim", "--samples", "16"]) == 0
    assert "ssim" in capsys.readouterr().out


def test_a_refused_reader_uses_it_even_where_the_dataset_is(tmp_path):
    """allow(spec) False (an uploaded run in the app) never reads the manifest's path."""
    root = tmp_path / "data"
    root.mkdir()
    make_dir(root, n_train=20, n_test=10)
    out = tmp_path / "run"
    spec = f"mnist:path={root}"
    assert (
        main(
            [
                "train",
                "--model",
                "vae",
                "--tasks",
                spec,
                "--epochs",
                "1",
                "--out",
                str(out),
                "--device",
                "cpu",
                *NETS,
            ]
        )
        == 0
    )
    run = runs.open_run(out)
    calls = []

    def load(spec, split, seed):
        calls.append(spec)
        raise AssertionError("read a dataset path it was told not to")

    sets, notes = evaldata.test_sets(run, allow=lambda s: False, load=load)
    assert not calls and "not read here" in notes[0] and len(sets[0]) == 10


def test_embedded_tasks_are_generated_not_read_from_the_run(tiny_run):
    sets, notes = evaldata.test_sets(runs.open_run(tiny_run), allow=lambda s: False)
    assert not notes and len(sets[0]) > 0


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t.update(x=t["x"].float()), "not uint8"),
        (lambda t: t.update(y=t["y"] + 100), "out of range"),
        (lambda t: t.update(index=t["index"][:3]), "index are not"),
        (lambda t: t.pop("y"), "labels are not"),
        (lambda t: t.update(x=torch.zeros(5000, 1, 28, 28, dtype=torch.uint8)), "5000 images"),
    ],
)
def test_malformed_stored_data_is_one_line(mnist_run, tmp_path, damage, message):
    import hashlib

    from safetensors.torch import load_file, save

    out = tmp_path / "run"
    shutil.copytree(mnist_run[0], out)
    f = out / "evaldata-00.safetensors"
    tensors = load_file(f)
    damage(tensors)
    blob = save(tensors)
    f.write_bytes(blob)
    m = json.loads((out / "manifest.json").read_text())
    m["evaldata"]["0"].update(sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runs.RunError, match=message):
        evaldata.stored(runs.open_run(out), 0)


def test_a_run_without_it_says_how_to_add_it_and_eval_write_adds_it(tmp_path, tiny_run):
    out = tmp_path / "old"
    shutil.copytree(tiny_run, out)
    m = json.loads((out / "manifest.json").read_text())
    for entry in m.pop("evaldata").values():
        (out / entry["file"]).unlink()
    (out / "manifest.json").write_text(json.dumps(m))
    run = runs.open_run(out)
    with pytest.raises(runs.RunError, match="eval RUN --write"):
        evaldata.stored(run, 0)
    assert main(["eval", str(out), "--write"]) == 0
    run = runs.open_run(out)
    assert sorted(run.manifest["evaldata"]) == ["0", "1"]
    sets, _ = evaldata.test_sets(run)
    stored = evaldata.stored(run, 1)
    assert np.allclose(stored.x.numpy(), (sets[1].x[stored.index] * 255).round().numpy() / 255)
