"""The lifelong trainer: snapshots, the forgetting matrix, frozen experts, resume, NaN."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong import runs
from lifelong.train import Callback, TrainingError, read_log, train
from tests.conftest import tiny_args

TINY = {"latent_dim": 4, "hidden": 32, "channels": 8}
SPLIT = ["digits:classes=0-4", "digits:classes=5-9"]


def _args(out, tasks=SPLIT, **kw):
    base = {"tasks": tasks, "overrides": dict(TINY), "eval_samples": 64, "threads": 2}
    return tiny_args(out, **{**base, **kw})


@pytest.fixture(scope="module")
def three_task_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "three"
    tasks = ["digits:classes=0-4", "digits:classes=5-9", "digits:invert"]
    return train(_args(out, tasks), callbacks=[])


def test_run_folder_has_the_design_layout(three_task_run):
    names = sorted(p.name for p in three_task_run.iterdir())
    assert names == [
        "evaldata-00.safetensors",  # the evaluation images travel with the run
        "evaldata-01.safetensors",
        "evaldata-02.safetensors",
        "expert_elbo-00.safetensors",  # each expert's ELBO on each task (Compare experts)
        "expert_elbo-01.safetensors",
        "expert_elbo-02.safetensors",
        "log.jsonl",
        "manifest.json",
        "map-00.safetensors",
        "map-01.safetensors",
        "map-02.safetensors",
        "task-00.safetensors",
        "task-01.safetensors",
        "task-02.safetensors",
    ]
    m = json.loads((three_task_run / "manifest.json").read_text())
    assert sorted(m["extras"]["map"]) == ["0", "1", "2"]  # the latent map's default projection
    assert sorted(m["extras"]["expert_elbo"]) == ["0", "1", "2"]
    assert m["format"] == "lifelong-run/1" and m["status"] == "complete"
    # square forgetting matrices: every snapshot on every task, unseen ones included
    for name in ("mse", "elbo"):
        assert len(m["metrics"][name]) == 3 and all(len(r) == 3 for r in m["metrics"][name])
        assert all(v is not None for r in m["metrics"][name] for v in r)
    log = read_log(three_task_run / "log.jsonl")
    assert {r["task"] for r in log} == {0, 1, 2} and all(
        "total" in r for r in log if r["kind"] != "task"
    )


def test_events_record_assignment_freezing_dirichlet_and_routing(three_task_run):
    events = runs.open_run(three_task_run).events
    kinds = [e["type"] for e in events]
    assert kinds.count("expert_frozen") == 2 and kinds.count("routing") == 3
    mixing = [e for e in events if e["type"] == "mixing"]
    assert [len(e["frozen"]) for e in mixing] == [0, 1, 2]
    routing = [e for e in events if e["type"] == "routing"]
    assert all(len(e["fractions"]) == 3 and len(e["fractions"][0]) == 3 for e in routing)


def test_frozen_experts_are_bit_identical_in_every_later_snapshot(three_task_run):
    run = runs.open_run(three_task_run)
    frozen = [e for e in run.events if e["type"] == "expert_frozen"]
    for ev in frozen:
        j, held = ev["expert"], ev["holds_task"]
        prefix = f"experts_.{j}."
        ref = {k: v for k, v in run.state(held).items() if k.startswith(prefix)}
        assert ref
        for later in range(held + 1, 3):
            state = run.state(later)
            for k, v in ref.items():
                assert torch.equal(state[k], v), (k, later)
    # ... and stored once: later snapshot files do not contain the frozen expert again
    from safetensors import safe_open

    j = frozen[0]["expert"]
    with safe_open(str(three_task_run / "task-02.safetensors"), "pt") as f:
        assert not any(k.startswith(f"experts_.{j}.") for k in f.keys())


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, three_task_run):
    class StopInTask1(Callback):
        def on_step(self, info):
            if info["task"] == 1 and info["step"] == 3:
                raise KeyboardInterrupt

    out = tmp_path / "resumed"
    tasks = ["digits:classes=0-4", "digits:classes=5-9", "digits:invert"]
    with pytest.raises(KeyboardInterrupt):
        train(_args(out, tasks), callbacks=[StopInTask1()])
    assert runs.open_run(out).snapshots == [0]
    train(_args(out, tasks, resume=True), callbacks=[])
    a, b = runs.open_run(out), runs.open_run(three_task_run)
    assert a.snapshots == [0, 1, 2]
    sa, sb = a.state(2), b.state(2)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metric("mse") == b.metric("mse")


def test_nan_loss_stops_with_a_clear_message_and_keeps_snapshots(tmp_path, monkeypatch):
    from lifelong.models.lmvae import LMVAE

    real = LMVAE.loss

    def poisoned(self, batch, task):
        out = real(self, batch, task)
        if task == 1:
            out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(LMVAE, "loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match="loss became nan at task 1"):
        train(_args(out), callbacks=[])
    run = runs.open_run(out)
    assert run.snapshots == [0] and run.manifest["status"].startswith("failed")


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "r"
    train(_args(out, SPLIT[:1]), callbacks=[])
    with pytest.raises(TrainingError, match="already holds a run"):
        train(_args(out, SPLIT[:1]), callbacks=[])


def test_routing_sends_each_task_to_its_expert(tmp_path):
    """Eq. 7 selection on a quickly trained model: >= 95 % of each task's test images go to
    the expert holding that task."""
    out = tmp_path / "route"
    tasks = ["digits", "shapes"]
    train(_args(out, tasks, epochs=2, eval_samples=256, overrides={"latent_dim": 8}), callbacks=[])
    acc = runs.open_run(out).metric("routing_accuracy")[-1]
    assert all(a >= 0.95 for a in acc), acc
