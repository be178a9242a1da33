"""L-MVAE's assignment step (paper 000 eqs. 3-5) under both readings of when it runs
(LMVAEConfig.assign_on): which expert is frozen, on which data, and that it stays frozen."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.models import build, config_from_dict, config_to_dict
from lifelong.models import lmvae_assign as assign
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task

SMALL = {"latent_dim": 4, "hidden": 32, "channels": 8}


def _model(reading: str, n_tasks: int = 3, **kw):
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=n_tasks, assign_on=reading, **SMALL, **kw))


def _train(model, data, steps, only=None, seed=0):
    """Adam on random batches; only=k trains expert k alone (the others keep their weights)."""
    keep = model.trainable.clone()
    if only is not None:
        model.trainable[:] = False
        model.trainable[only] = True
    opt = torch.optim.Adam(model.trainable_parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(data.x), (64,), generator=g)
        loss = model.loss({"x": data.x[idx]}, 0)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.trainable.copy_(keep)
    model.trainable_parameters()  # re-sync requires_grad with the buffer


@torch.no_grad()
def _losses(model, data) -> torch.Tensor:
    """Mean loss (-ELBO, posterior-mean decoding) of every expert on all of data: [K]."""
    return -model.expert_elbos(data.x, sample=False).mean(0)


def _state(model, k):
    return {n: v.clone() for n, v in model.experts_[k].state_dict().items()}


def test_task_batches_cover_a_small_task_without_an_empty_batch():
    x = torch.arange(300.0)[:, None]
    sizes = [len(b) for b in assign.task_batches(x, 0, 128, 4)]
    assert sizes == [128, 128, 44]  # every image once, none empty
    assert [len(b) for b in assign.task_batches(x[:100], 0, 128, 4)] == [100]
    assert [len(b) for b in assign.task_batches(torch.zeros(1000, 1), 0, 128, 4)] == [128] * 4
    one, two = assign.task_batches(x, 3, 128, 4), assign.task_batches(x, 3, 128, 4)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))  # seeded by task
    got = torch.cat(assign.task_batches(x, 0, 128, 4)).flatten().sort().values
    assert torch.equal(got, x.flatten())
    with pytest.raises(ValueError, match="no images"):
        assign.task_batches(x[:0], 2, 128, 4)


@pytest.mark.parametrize("reading", ["finished", "incoming"])
def test_eq3_on_a_task_smaller_than_its_batches_is_finite_and_follows_the_fit(reading):
    """100 images < assign_batches x assign_batch_size = 512: the batches past the data were
    empty, their mean ELBO NaN, every p(c) NaN and eq. 4 froze expert 0 whatever the fit."""
    model = _model(reading, n_tasks=2)
    small = [synthetic_task("hbar", 100, 0), synthetic_task("vbar", 100, 1)]
    model.before_task(0, small[0])
    _train(model, small[0], 40, only=1)  # expert 1 fits task 0, expert 0 is untrained
    if reading == "finished":
        events = model.after_task(0, small[0])
        want = 1  # the best fit of the finished task
    else:
        model.after_task(0, small[0])
        events = model.before_task(1, small[1])
        want = int(_losses(model, small[1]).argmax())  # the worst fit of the incoming task
    a = next(e for e in events if e["type"] == "assignment")
    assert all(math.isfinite(v) for v in a["p_c"] + a["expert_loss"])
    assert a["chosen"] == want and model.task_experts()[0] == want


def test_finished_freezes_the_free_expert_that_fits_the_finished_task_best():
    """Alg. 1 l. 11: eq. 3 with L = ELBO on the finished task's data; eq. 4 picks the free expert
    with the lowest loss there, eq. 5 freezes it; an expert already frozen is never picked,
    however well it fits."""
    model = _model("finished")
    t0, t1 = synthetic_task("hbar", 256, 0), synthetic_task("hbar", 256, 5)  # t1 like t0
    model.before_task(0, t0)
    _train(model, t0, 15)
    _train(model, t0, 40, only=2)  # expert 2 now fits task 0 clearly best
    loss = _losses(model, t0)
    assert int(loss.argmin()) == 2
    events = model.after_task(0, t0)
    kinds = [e["type"] for e in events]
    assert kinds == ["assignment", "task_holder", "expert_frozen"]
    a, frozen = events[0], events[-1]
    assert a["chosen"] == 2 and a["task"] == 0
    assert torch.allclose(torch.tensor(a["expert_loss"]), loss, rtol=1e-4)
    assert [frozen[k] for k in ("type", "task", "expert", "holds_task")] == [
        "expert_frozen",
        0,  # recorded under the task whose hook froze it (a resume keeps it; the timeline
        2,  # shows it frozen from the next task on: tests/test_events.py)
        0,
    ]
    assert model.assigned.tolist() == [False, False, True]
    assert model.trainable.tolist() == [True, True, False] and model.task_experts()[0] == 2
    held = _state(model, 2)
    # The next task starts without a second assignment: Dirichlet a = e for the frozen expert.
    start = model.before_task(1, t1)
    assert [e["type"] for e in start] == ["mixing"] and start[0]["frozen"] == [2]
    _train(model, t1, 20)
    loss = _losses(model, t1)
    assert int(loss.argmin()) == 2  # the frozen expert still fits the look-alike task best ...
    events = model.after_task(1, t1)
    free = loss.masked_fill(torch.tensor([False, False, True]), float("inf"))
    assert events[0]["chosen"] == int(free.argmin())  # ... but only a free one is chosen
    log_q = events[0]["log_q"]  # eq. 3's complement as it was evaluated: c' masks expert 2
    assert math.isinf(log_q[2]) and all(math.isfinite(log_q[k]) for k in (0, 1))
    j = events[0]["chosen"]
    assert model.assigned.sum() == 2 and model.task_experts()[:2] == [2, j]
    # The last task: its holder is recorded, nothing is left to freeze for.
    t2 = synthetic_task("blob", 256, 2)
    model.before_task(2, t2)
    _train(model, t2, 10)
    last = model.after_task(2, t2)
    assert [e["type"] for e in last] == ["task_holder"] and model.assigned.sum() == 2
    assert all(torch.equal(v, held[n]) for n, v in model.experts_[2].state_dict().items())


def test_incoming_freezes_the_free_expert_that_fits_the_incoming_task_worst():
    """The old reading: eq. 3 with L = -ELBO on the incoming task, evaluated when it starts."""
    model = _model("incoming")
    t0, t1 = synthetic_task("hbar", 256, 0), synthetic_task("vbar", 256, 1)
    model.before_task(0, t0)
    _train(model, t0, 15)
    _train(model, t1, 40, only=1)  # expert 1: nearest to the incoming task
    ends = model.after_task(0, t0)
    assert [e["type"] for e in ends] == ["task_holder"] and not model.assigned.any()
    loss = _losses(model, t1)
    events = model.before_task(1, t1)
    a = next(e for e in events if e["type"] == "assignment")
    assert a["task"] == 1 and a["chosen"] == int(loss.argmax()) != 1
    frozen = next(e for e in events if e["type"] == "expert_frozen")
    assert frozen["task"] == 1 and frozen["holds_task"] == 0
    assert model.task_experts()[0] == a["chosen"] and bool(model.trainable[1])


@pytest.mark.parametrize("reading", ["finished", "incoming"])
def test_each_task_gets_its_own_frozen_expert_that_stays_bit_identical(reading):
    model = _model(reading)
    seq = [synthetic_task(k, 256, i) for i, k in enumerate(["hbar", "vbar", "blob"])]
    frozen = {}
    for t, data in enumerate(seq):
        model.before_task(t, data)  # "incoming" freezes here
        for k in model.assigned.nonzero().flatten().tolist():
            frozen.setdefault(k, _state(model, k))
        assert not any(p.requires_grad for k in frozen for p in model.experts_[k].parameters())
        _train(model, data, 10)
        model.after_task(t, data)  # "finished" freezes here
        for k in model.assigned.nonzero().flatten().tolist():
            frozen.setdefault(k, _state(model, k))
    holders = model.task_experts()
    assert sorted(holders) == [0, 1, 2]  # one expert per task
    assert len(frozen) == 2
    for k, ref in frozen.items():
        assert all(torch.equal(v, ref[n]) for n, v in model.experts_[k].state_dict().items())


def test_a_run_made_before_assign_on_resumes_with_the_reading_it_was_trained_with():
    """Runs without the field load with the default "finished"; the state after an "incoming"
    task boundary has no depository for the finished task yet, so before_task applies eq. 3 on
    the incoming task as those runs did."""
    old_cfg = config_to_dict(LMVAEConfig(n_tasks=3, **SMALL))
    del old_cfg["assign_on"]
    assert config_from_dict(LMVAEConfig, old_cfg).assign_on == "finished"
    old = _model("incoming")
    t0, t1 = synthetic_task("hbar", 256, 0), synthetic_task("vbar", 256, 1)
    old.before_task(0, t0)
    _train(old, t0, 10)
    old.after_task(0, t0)  # the snapshot an old run stores after task 0
    resumed = build("lmvae", config_from_dict(LMVAEConfig, old_cfg))
    resumed.load_state_dict(old.state_dict())
    events = resumed.before_task(1, t1)
    assert [e["type"] for e in events] == ["assignment", "expert_frozen", "mixing"]
    assert int(resumed.assigned.sum()) == 1 and resumed.task_experts()[0] >= 0


def test_config_refuses_an_unknown_reading():
    one_line = "^assign_on must be 'finished' or 'incoming', not 'both'$"
    with pytest.raises(ValueError, match=one_line):
        LMVAEConfig(assign_on="both").validate()
    assert LMVAEConfig().gamma == 4.0  # eq. 17's weight, Sec. VII-D
