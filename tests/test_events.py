"""Typed task-boundary events (lifelong/events.py): stored and read back unchanged, checked
field by field when a run is opened, old runs migrated, unknown kinds kept, and every family's
events shown by the timeline and the Overview from the typed form."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import pytest

from lifelong import events, runs
from lifelong.explore import summary, timeline

ONE_OF_EACH = [
    events.Mixing(0, alpha=[1.0, 0.5], trainable=[0, 1], frozen=[], dropout_rate=[0.1, 0.2]),
    events.Assignment(1, expert_loss=[3.0, 1.0], p_c=[0.2, 0.8], log_q=[1.0, 2.0], chosen=0),
    events.ExpertFrozen(1, expert=0, holds_task=0),
    events.ExpertAdded(1, expert=2, distances=[4.0, 5.0], threshold=3.0),
    events.ExpertReused(2, expert=1, distances=[1.0, 5.0], threshold=3.0),
    events.TaskHolder(1, expert=1),
    events.Routing(1, after_task=1, fractions=[[1.0, 0.0], [0.25, 0.75]]),
    events.ComponentPruned(0, expert=3, epoch=4, keep_score=0.05, threshold=0.6),
    events.Replay(1, pi=0.5, replay_fraction=0.5),
    events.ReplayRecorded(1, samples=16),
    events.TeacherSwapped(1, teacher_dim=1),
    events.DimensionGrown(1, block="zd", from_dim=1, to_dim=2, init="copy"),
    events.TaskCode(0, code=0, share=0.9, counts=[9, 1]),
    events.GeneratorFrozen(1),
    events.CodeUsage(0, probs=[0.5, 0.5]),
    events.Populations(0, populations=[0, 1], objective="eq. 6 (MI)"),
    events.PopulationsLearnt(0, learnt=[0, 1]),
    events.EwcConsolidated(0, samples=64, fisher_task_mean=0.1, fisher_task_max=2.0),
]


def test_every_kind_is_covered_and_round_trips():
    built_in = {k for k, cls in events.KINDS.items() if cls.__module__ == events.__name__}
    assert {e.kind for e in ONE_OF_EACH} == built_in
    for e in ONE_OF_EACH:
        stored = json.loads(json.dumps(e.to_dict()))
        assert events.parse(stored) == e, e.kind
        assert "\n" not in e.describe() and e.describe()


def test_a_format_1_event_is_migrated():
    """Runs written before the typed form stored LGM's growth as "from" / "to"."""
    old = {"type": "dimension_grown", "task": 1, "block": "zd", "from": 1, "to": 2, "init": "x"}
    e = events.parse(old, fmt=1)
    assert (e.from_dim, e.to_dim) == (1, 2) and not e.extra
    assert e["type"] == "dimension_grown" and e.get("to_dim") == 2  # the dict view


@pytest.mark.parametrize(
    "bad, says",
    [
        ({"type": "expert_frozen", "task": 1, "expert": "0", "holds_task": 0}, "expert='0'"),
        ({"type": "mixing", "task": 0, "alpha": [1.0, "x"]}, "alpha="),
        ({"type": "routing", "task": 0, "after_task": 0, "fractions": [1.0]}, "fractions="),
        ({"type": "replay", "task": 1.5}, "task=1.5"),
        ({"task": 0}, "no type"),
        ([1, 2], "not an object"),
    ],
)
def test_a_malformed_event_is_named_in_one_line(bad, says):
    with pytest.raises(ValueError) as exc:
        events.parse(bad)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_kinds_and_fields_are_kept_not_refused():
    """A plugin's event kind (plugin not installed here) and a field a newer writer added."""
    other = events.parse({"type": "codebook_reset", "task": 2, "codes": [3, 4]})
    assert isinstance(other, events.Other) and other.kind == "codebook_reset"
    assert other.to_dict() == {"type": "codebook_reset", "task": 2, "codes": [3, 4]}
    assert "codes=[3, 4]" in other.describe()
    newer = events.parse({"type": "task_holder", "task": 0, "expert": 1, "why": "best"})
    assert newer.expert == 1 and newer.to_dict()["why"] == "best"


def test_a_hook_may_return_dicts_or_events(tiny_run):
    stored = events.from_hook([events.GeneratorFrozen(3), {"type": "replay", "pi": 0.5}], 3)
    assert stored == [
        {"type": "generator_frozen", "task": 3},
        {"type": "replay", "task": 3, "pi": 0.5, "replay_fraction": 0.0},
    ]
    with pytest.raises(ValueError, match="not a list"):
        events.from_hook(None, 0)


def test_a_run_with_a_malformed_event_is_refused_and_an_old_one_opens(tiny_run, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    m = json.loads((bad / "manifest.json").read_text())
    assert m["events_format"] == events.FORMAT and m["events"]
    m["events"][0]["alpha"] = "lots"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(runs.RunError, match=r"events\[0\]: mixing: alpha='lots'"):
        runs.open_run(bad)
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    m = json.loads((old / "manifest.json").read_text())
    del m["events_format"]  # a run written before the typed form
    (old / "manifest.json").write_text(json.dumps(m))
    run = runs.open_run(old)
    assert all(isinstance(e, events.Event) for e in run.events)
    assert [e.kind for e in run.events] == [e["type"] for e in m["events"]]


def _run(evs, n_tasks):
    return SimpleNamespace(tasks=[f"t{i}" for i in range(n_tasks)], events=evs)


def test_the_timeline_shows_pruned_components_from_then_on():
    """MVAE's component_pruned (paper 002 Sec. V-G) is a lasting state, not "free"."""
    run = _run(
        [
            events.Mixing(0, alpha=[1.0, 1.0, 1.0], trainable=[0, 1, 2]),
            events.ComponentPruned(0, expert=2, epoch=3, keep_score=0.05, threshold=0.6),
            events.Mixing(1, alpha=[1.0, 1.0, 0.0], trainable=[0, 1]),
        ],
        3,
    )
    state = timeline.expert_states(run)["state"]
    assert state[0] == ["free", "free", "pruned (keep 0.05)"]
    assert state[1] == ["free", "free", "pruned (keep 0.05)"]
    assert state[2] == ["", "", "pruned (keep 0.05)"]  # nothing logged for task 2 but pruning


@pytest.mark.parametrize("frozen_at", [0, 1], ids=["finished (Alg. 1)", "incoming"])
def test_the_timeline_shows_an_expert_frozen_from_the_next_task(frozen_at):
    """Eq. 3 read on the finished task freezes at the end of task 0 (event of task 0); read
    on the incoming task, at the start of task 1: the timeline reads both the same way."""
    run = _run(
        [
            events.Mixing(0, alpha=[1.0, 1.0], trainable=[0, 1]),
            events.TaskHolder(0, expert=0),
            events.ExpertFrozen(frozen_at, expert=0, holds_task=0),
            events.Mixing(1, alpha=[0.01, 1.0], trainable=[1]),
            events.TaskHolder(1, expert=1),
        ],
        2,
    )
    out = timeline.expert_states(run)
    assert out["state"] == [
        ["free · learns this task", "free"],
        ["frozen: task 0", "free · learns this task"],
    ]
    assert out["alpha"][1] == [0.01, 1.0]


def test_a_plugin_event_marks_the_timeline_and_is_described():
    @dataclass(frozen=True)
    class CodebookReset(events.Event):
        kind: ClassVar[str] = "test_codebook_reset"
        expert: int = 0

        def describe(self) -> str:
            return f"codebook of expert {self.expert} reset"

        def marks(self):
            return [events.Mark(self.expert, "reset")]

    try:
        parsed = events.parse({"type": "test_codebook_reset", "task": 0, "expert": 1})
        assert parsed == CodebookReset(0, expert=1)
        run = _run([events.Mixing(0, alpha=[1.0, 1.0], trainable=[0, 1]), parsed], 1)
        assert timeline.expert_states(run)["state"] == [["free", "reset"]]
        rows = summary.event_rows(run)
        assert rows[1] == {"task": 0, "event": "test_codebook_reset", "details": parsed.describe()}
    finally:
        events.KINDS.pop("test_codebook_reset")


def test_every_family_hook_returns_typed_events(family_models):
    for key, (model, data) in family_models.items():
        for hook in (model.before_task, model.after_task):
            for e in hook(0, data):
                assert isinstance(e, events.Event), (key, e)


@pytest.fixture(scope="module")
def family_models():
    import torch

    from lifelong import data as ldata
    from lifelong import models
    from lifelong.train import build_config

    data = ldata.load_task("digits:classes=0-1", "train")
    out = {}
    for key in models.REGISTRY:
        torch.manual_seed(0)
        cfg = build_config(key, ["digits:classes=0-1", "digits:classes=2-3"], {"latent_dim": 2})
        out[key] = (models.build(key, cfg), data)
    return out
