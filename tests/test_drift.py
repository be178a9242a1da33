"""Latent drift (issue 18): the matrix metrics.drift computes, `eval --metrics drift` on real
runs (a frozen L-MVAE expert's task does not move at all, a fine-tuned VAE's first task does),
and the time-lapse `--write` stores beside it for the Latent map."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from lifelong import evaldata, metrics, runeval
from lifelong.__main__ import main
from lifelong.explore import timelapse
from lifelong.runs import open_run


def test_drift_is_distance_moved_over_the_spread_when_learnt():
    rng = np.random.default_rng(0)
    task = np.repeat([0, 1], 50)
    first = rng.normal(size=(100, 3))
    second = first.copy()
    second[task == 0] += np.array([2.0, 0.0, 0.0])  # task 0 moves by 2 after task 1
    third = second * 3.0  # a later snapshot rescales everything
    m = metrics.drift([first, second, third], task)
    spread0 = math.sqrt(((first[:50] - first[:50].mean(0)) ** 2).sum(1).mean())
    assert m[0] == [0.0, None]  # task 1 not learnt yet
    assert m[1][0] == pytest.approx(2.0 / spread0) and m[1][1] == 0.0
    moved = np.linalg.norm(third[:50] - first[:50], axis=1).mean()
    assert m[2][0] == pytest.approx(moved / spread0)
    # the scale of the codes does not matter: every snapshot x 10 gives the same matrix
    scaled = metrics.drift([10 * first, 10 * second, 10 * third], task)
    assert np.allclose(np.array(scaled, float), np.array(m, float), equal_nan=True)
    # rows taken after the phase ending at after_tasks[k]; a snapshot with fewer dimensions
    # (before a block grew) is padded with zeros
    joint = metrics.drift([first[:, :2], first], task, after_tasks=[1, 2], n_tasks=3)
    assert joint[0] == [0.0, 0.0, None]
    assert joint[1][0] == pytest.approx(np.abs(first[:50, 2]).mean() / spread0_2d(first, 0))
    assert metrics.DEFINITIONS["drift"].higher_is_better is False
    assert "drift" in metrics.EVAL_MATRIX and "drift" in metrics.EVAL_METRICS


def spread0_2d(codes, j):
    c = codes[j * 50 : (j + 1) * 50, :2]
    return math.sqrt(((c - c.mean(0)) ** 2).sum(1).mean())


@pytest.fixture
def lmvae_copy(tiny_run, tmp_path):
    dst = tmp_path / "lmvae"
    shutil.copytree(tiny_run, dst)
    return dst


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """The tiny run's recipe as a plain VAE fine-tuned task after task (no experts)."""
    from tests.conftest import TINY_ARGS

    out = tmp_path_factory.mktemp("drift") / "vae"
    argv = [a if a != "lmvae" else "vae" for a in TINY_ARGS]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_a_frozen_experts_task_does_not_drift_and_the_time_lapse_is_stored(lmvae_copy, capsys):
    run = open_run(lmvae_copy)
    assert run.load_model(0).task_experts()[0] >= 0  # frozen with task 0 (assign_on=finished)
    capsys.readouterr()
    assert main(["eval", str(lmvae_copy), "--metrics", "drift", "--write", "--json"]) == 0
    value = json.loads(capsys.readouterr().out)["eval"]["drift"]
    m = value["per_task"]
    assert m[0] == [0.0, None] and m[1] == [0.0, 0.0]  # exactly: its expert never changed
    assert value["space"] == "task expert" and value["images"][0] > 100
    run = open_run(lmvae_copy)
    tests, _ = evaldata.test_sets(run)
    tl = timelapse.stored(run, tests, "task expert")
    assert tl is not None and tl.snapshots == [0, 1] and tl.xy.shape == (2, len(tl), 2)
    assert len(tl) == sum(len(t) for t in tests)
    first = tl.task == 0
    assert (tl.xy[0, first] == tl.xy[1, first]).all()  # task 0's points stand still
    assert tl.drift == m
    # where the datasets are absent the run's stored evaluation images stand in: the stored
    # time-lapse keeps the points among them, indexed by position in the stored sample
    samples = [evaldata.stored(run, j) for j in range(len(run.tasks))]
    kept = timelapse.stored(run, samples, "task expert")
    assert len(kept) == sum(len(t) for t in samples)
    i = len(kept) - 1
    t, pos = int(kept.task[i]), int(kept.index[i])
    (same,) = ((tl.task == t) & (tl.index == samples[t].index[pos])).nonzero()[0]
    assert (kept.xy[:, i] == tl.xy[:, same]).all()
    # a second eval reuses the stored value (same snapshots), and the page's reader refuses
    # a time-lapse of other snapshots
    again = runeval.evaluate_run(run, ["drift"])
    assert again["stored"] == ["drift"]
    manifest = json.loads((lmvae_copy / "manifest.json").read_text())
    manifest["extras"]["timelapse"]["0"] = manifest["extras"]["timelapse"].pop("1")
    (lmvae_copy / "manifest.json").write_text(json.dumps(manifest))
    assert timelapse.stored(open_run(lmvae_copy), tests, "task expert") is None


def test_a_fine_tuned_vae_drifts(vae_run):
    run = open_run(vae_run)
    result = runeval.evaluate_run(run, ["drift"])
    m = result["values"]["drift"]["per_task"]
    assert m[0][0] == 0.0 and m[1][1] == 0.0 and m[0][1] is None
    assert m[1][0] > 0.05  # the encoder was trained on task 1: task 0's codes moved
    assert result["values"]["drift"]["space"] == "routed"
    assert timelapse.KIND in result["extras"]


def test_eval_prints_the_drift_matrix(lmvae_copy, capsys):
    capsys.readouterr()
    assert main(["eval", str(lmvae_copy), "--metrics", "drift"]) == 0
    out = capsys.readouterr().out
    assert "drift: latent drift" in out and "codes: task expert" in out
    assert "timelapse" not in json.loads((lmvae_copy / "manifest.json").read_text())["extras"]


def test_pretrain_keeps_the_last_map_beside_a_stored_time_lapse(lmvae_copy, capsys):
    """pretrain's slimming: with a time-lapse stored, earlier snapshots' default maps go (the
    manifest forgets them, the files are removed) and the run still opens and reads its last
    map; a run without a time-lapse keeps every map."""
    from lifelong.__main__ import _slim

    before = sorted(p.name for p in lmvae_copy.glob("map-*.safetensors"))
    assert before == ["map-00.safetensors", "map-01.safetensors"]
    _slim(lmvae_copy)  # no time-lapse yet: nothing changes
    assert sorted(p.name for p in lmvae_copy.glob("map-*.safetensors")) == before
    assert main(["eval", str(lmvae_copy), "--metrics", "drift", "--write"]) == 0
    _slim(lmvae_copy)
    assert sorted(p.name for p in lmvae_copy.glob("map-*.safetensors")) == ["map-01.safetensors"]
    run = open_run(lmvae_copy)
    assert list(run.manifest["extras"]["map"]) == ["1"] and run.extra("map", 1) is not None
    assert run.extra("map", 0) is None


def test_a_run_carries_as_many_evaluation_images_as_asked(tmp_path):
    """TrainArgs.eval_images (the Fashion zoo's 256): the stored sample is the first n of the
    same draw, so it is a subset of the default one."""
    from lifelong.data import load_task
    from lifelong.train import train
    from tests.conftest import tiny_args

    out = train(tiny_args(tmp_path / "run", eval_images=40, map_points=0), callbacks=[])
    run = open_run(out)
    small = evaldata.stored(run, 0)
    assert run.manifest["evaldata"]["0"]["n"] == 40 and len(small) == 40
    full = evaldata.sample(load_task(run.tasks[0], "test"))
    assert set(small.index.tolist()) <= set(full["index"].tolist())
