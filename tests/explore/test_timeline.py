"""The Expert timeline's readings of a run's events and log."""

from __future__ import annotations

from lifelong.explore import timeline
from lifelong.runs import open_run


def test_expert_states_follow_the_events(tiny_run):
    run = open_run(tiny_run)
    tl = timeline.expert_states(run)
    assert tl["experts"] == [0, 1] and len(tl["alpha"]) == 2
    frozen = [e for e in run.events if e["type"] == "expert_frozen"]
    assert len(frozen) == 1
    k = frozen[0]["expert"]
    # task 0: both experts free; task 1: the frozen one holds task 0, its a is ~e (eq. 6)
    assert tl["state"][0][0].startswith("free") and tl["state"][0][1].startswith("free")
    assert tl["state"][1][k] == "frozen: task 0"
    assert tl["alpha"][1][k] < 1e-3 < tl["alpha"][1][1 - k]
    assert "learns this task" in tl["state"][1][1 - k]


def test_routing_and_epoch_series(tiny_run):
    run = open_run(tiny_run)
    r = timeline.routing(run, 1)
    assert len(r) == 2 and all(abs(sum(row) - 1) < 1e-3 for row in r)
    assert timeline.routing(run, 7) is None
    s = timeline.epoch_series(run)
    assert s["x"] == [0, 1] and s["task"] == [0, 1] and s["boundaries"] == [1]
    assert {"total", "rec", "kl", "images_per_s"} <= set(s["series"])
    assert all(isinstance(v, float) for v in s["series"]["total"])


def test_dynamic_experts_show_frozen_with_the_tasks_they_hold():
    """L-MVAE-Dyn has no eq. 3 ExpertFrozen events: an expert its Mixing event lists as not
    training reads "frozen" with the tasks it holds (TaskHolder), the added / reused marks
    stay on the expert that learns the task."""
    from types import SimpleNamespace

    from lifelong import eventbase

    e = 1e-4
    stored = [
        {"type": "expert_added", "task": 0, "expert": 0},
        {"type": "mixing", "task": 0, "alpha": [1.0], "trainable": [0], "frozen": []},
        {"type": "task_holder", "task": 0, "expert": 0},
        {"type": "expert_added", "task": 1, "expert": 1, "distances": [24.1], "threshold": 7.0},
        {"type": "mixing", "task": 1, "alpha": [e, 1 - e], "trainable": [1], "frozen": [0]},
        {"type": "task_holder", "task": 1, "expert": 1},
        {"type": "expert_reused", "task": 2, "expert": 0, "distances": [5.1, 19.2]},
        {"type": "mixing", "task": 2, "alpha": [1 - e, e], "trainable": [0], "frozen": [1]},
        {"type": "task_holder", "task": 2, "expert": 0},
    ]
    run = SimpleNamespace(
        tasks=["digits", "glyphs:invert", "digits:rotate=20"],
        events=eventbase.load(stored, eventbase.FORMAT),
    )
    state = timeline.expert_states(run)["state"]
    assert state[1][0] == "frozen: task 0" and "added" in state[1][1]
    assert state[2][1] == "frozen: task 1" and "reused" in state[2][0]
    assert state[0][0].startswith("added")
