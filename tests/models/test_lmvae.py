"""L-MVAE (paper 000): the mechanisms, not only shapes."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong import losses
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import synthetic_task


def _train(model, task_id, data, steps=30, bs=64):
    opt = torch.optim.Adam(model.trainable_parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(task_id)
    for _ in range(steps):
        idx = torch.randint(len(data.x), (bs,), generator=g)
        loss = model.loss({"x": data.x[idx]}, task_id)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def test_melbo_of_one_expert_is_its_elbo(monkeypatch):
    """Eq. 2 with K = 1 reduces to the ELBO of eq. 1 (posterior means make it deterministic)."""
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=1, n_experts=1))
    x = synthetic_task("hbar", 32).x
    total = model.loss({"x": x}, 0)["total"]
    assert torch.allclose(total, -model.score(x, expert=0).mean(), rtol=1e-6)


def test_melbo_is_the_weighted_mean_of_expert_elbos():
    per_expert = torch.tensor([[-100.0, -50.0], [-200.0, -80.0]])
    w = torch.tensor([3.0, 1.0])
    assert torch.allclose(losses.melbo(per_expert, w), torch.tensor([-125.0, -57.5]))


def test_dirichlet_parameters_follow_eq6_after_each_task(tasks):
    torch.manual_seed(0)
    k, e = 4, 1e-4
    model = build("lmvae", LMVAEConfig(n_tasks=4, dirichlet_e=e))
    four = [*tasks, synthetic_task("hbar", seed=9)]
    for t, data in enumerate(four):
        model.before_task(t, data)
        done = int(model.assigned.sum())
        assert done == t  # one depository expert per finished task
        free = (1 - e * done) / (k - done)
        expected = torch.where(model.assigned, torch.tensor(e), torch.tensor(free))
        assert torch.allclose(model.alpha, expected)
        assert math.isclose(float(model.alpha.sum()), 1.0, rel_tol=1e-5)
        model.after_task(t, data)


def test_eq3_freezes_the_expert_farthest_from_the_new_task():
    """Read with L = loss: the best-fitting free expert stays free (fast transfer, VII-G)."""
    loss = torch.tensor([[300.0, 120.0, 250.0], [310.0, 118.0, 260.0]])  # [B, K]
    p, log_q = losses.assignment_probabilities(loss, torch.zeros(3, dtype=torch.bool), u=1e6)
    assert int(p.argmax()) == 0 and int(log_q.argmin()) == 0
    assert math.isclose(float(p.sum()), 2.0, rel_tol=1e-6)  # sum_j (1 - q_j) = K - 1
    # An expert already holding a task (c' = 1) is never chosen again, however bad its fit.
    p, log_q = losses.assignment_probabilities(loss, torch.tensor([True, False, False]), u=1e6)
    free = log_q.masked_fill(torch.tensor([True, False, False]), float("inf"))
    assert int(free.argmin()) == 2


def test_assignment_keeps_the_expert_nearest_the_new_task_free(tasks):
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=3))
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=10)
    # Teach expert 1 the incoming task so it is clearly the nearest to it.
    model.trainable[:] = False
    model.trainable[1] = True
    _train(model, 0, tasks[1], steps=40)
    model.trainable[:] = True
    events = model.before_task(1, tasks[1])
    chosen = next(e for e in events if e["type"] == "assignment")["chosen"]
    assert chosen != 1 and bool(model.trainable[1]) and not bool(model.trainable[chosen])


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_frozen_expert_gets_no_gradient_and_no_optimizer_update(tasks, batching):
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=3, expert_batching=batching))
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=5)
    model.before_task(1, tasks[1])
    j = int(model.assigned.nonzero()[0])
    before = {k: v.clone() for k, v in model.experts_[j].state_dict().items()}
    frozen_ids = {id(p) for p in model.experts_[j].parameters()}
    assert not frozen_ids & {id(p) for p in model.trainable_parameters()}
    _train(model, 1, tasks[1], steps=10)
    model.before_task(2, tasks[2])
    _train(model, 2, tasks[2], steps=10)
    for k, v in model.experts_[j].state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.experts_[j].parameters())


def test_route_is_eq7_and_select_its_argmax():
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=2)).eval()
    x = synthetic_task("vbar", 16).x
    with torch.no_grad():
        v = model.route(x)
        elbos = model.expert_elbos(x, sample=False)
    assert torch.allclose(v.sum(1), torch.ones(16))
    assert torch.allclose(v, torch.softmax(-1.0 / elbos, dim=1))
    assert torch.equal(model.select(x), v.argmax(1))


def test_capacity_and_beta_schedules():
    torch.manual_seed(0)
    x = synthetic_task("hbar", 16).x
    cap = build("lmvae", LMVAEConfig(n_tasks=1, objective="capacity", capacity_max=20.0))
    cap.progress = 0.5
    assert float(cap.loss({"x": x}, 0)["capacity"]) == pytest.approx(10.0)
    ann = build("lmvae", LMVAEConfig(n_tasks=1, beta_anneal=True, beta_start=0.2, beta_warmup=0.5))
    ann.progress = 0.25
    assert float(ann.loss({"x": x}, 0)["beta"]) == pytest.approx(0.6)
    ann.progress = 0.9
    assert float(ann.loss({"x": x}, 0)["beta"]) == pytest.approx(1.0)


def test_config_rejects_too_few_experts_and_unknown_objective():
    with pytest.raises(ValueError, match="n_experts >= number of tasks"):
        LMVAEConfig(n_tasks=3, n_experts=2).validate()
    with pytest.raises(ValueError, match="objective"):
        LMVAEConfig(objective="nope").validate()


def test_dynamic_adds_an_expert_for_a_novel_task_and_reuses_for_a_repeat():
    torch.manual_seed(0)
    seq = [
        synthetic_task("hbar", 512, 0),
        synthetic_task("blob", 512, 1),
        synthetic_task("hbar", 512, 2),
    ]
    cfg = LMVAEConfig(n_tasks=3, dynamic=True, novelty_samples=256)
    model = build("lmvae", cfg)
    model.before_task(0, seq[0])
    _train(model, 0, seq[0], steps=150)
    assert model.novelty_distances(seq[1].x[:256])[0] > cfg.novelty_threshold
    body = [p.clone() for p in model.enc_body.parameters()]
    events = model.before_task(1, seq[1])
    added, mixing = events[0], events[-1]
    assert added["type"] == "expert_added" and len(model.experts()) == 2
    assert model.trainable.tolist() == [False, True]
    # eq. 6: the expert that trains gets a = 1 - e K', the one that holds task 0 a = e
    e = cfg.dirichlet_e
    assert mixing["alpha"] == pytest.approx([e, 1 - e]) and mixing["frozen"] == [0]
    _train(model, 1, seq[1], steps=150)
    assert all(torch.equal(a, b) for a, b in zip(body, model.enc_body.parameters(), strict=True))
    events = model.before_task(2, seq[2])
    reused = events[0]
    assert reused["type"] == "expert_reused" and reused["expert"] == 0
    assert events[-1]["alpha"] == pytest.approx([1 - e, e])
    assert len(model.experts()) == 2 and model.trainable.tolist() == [True, False]


def test_eq24_as_printed_averages_all_pairs():
    """novelty_metric='pairs' is the literal double sum of eq. 24."""
    torch.manual_seed(0)
    model = build("lmvae", LMVAEConfig(n_tasks=2, dynamic=True, novelty_metric="pairs"))
    x = synthetic_task("hbar", 8).x
    with torch.no_grad():
        rec = model.reconstruct(x, 0).flatten(1)
    flat = x.flatten(1)
    expected = sum((flat[i] - rec[l]).norm() for i in range(8) for l in range(8)) / 64
    assert torch.allclose(model.novelty_distances(x)[0], expected, rtol=1e-5)
