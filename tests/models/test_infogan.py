"""Lifelong InfoGAN (paper 003): the WGAN-GP penalty (eq. 2), the mutual-information bound
(eq. 10), generative replay of a frozen previous generator (eqs. 3-7), inference through S, a CLI
run with its views, and (slow) the paper's claim that replay keeps the first task (Fig. 2)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lifelong import losses
from lifelong.explore import forgetting, generation
from lifelong.models import REGISTRY, build
from lifelong.models.infogan import InfoGAN, InfoGANConfig
from lifelong.runs import open_run
from tests.models.test_vae import TINY, _train, cli_run

SMALL = dict(TINY, noise_dim=4, discrete_dim=4)


def _model(n_tasks=3, **kw) -> InfoGAN:
    torch.manual_seed(0)
    opts = dict(SMALL, lr=2e-3, n_critic=1, replay_grid=4)
    opts.update(kw)
    return build("infogan", InfoGANConfig(n_tasks=n_tasks, **opts))


def _state(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


# -- eq. 2: the gradient penalty -----------------------------------------------------------


def test_gradient_penalty_matches_a_hand_computation():
    """D(o) = (w . o)^2 has grad 2 (w . o) w: at o_hat = eps real + (1 - eps) fake the penalty
    is (2 |w . o_hat| ||w|| - 1)^2, and its gradient in w is that of the closed form."""
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    real, fake = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    eps = torch.tensor([0.25, 0.5])
    gp = losses.gradient_penalty(lambda o: (o @ w) ** 2, real, fake, eps)
    # o_hat = [0.25, 0.75] and [0.5, 0.5]: w . o_hat = 1.75 and 1.5, ||w|| = sqrt(5).
    norms = torch.tensor([3.5, 3.0]) * math.sqrt(5)
    assert torch.allclose(gp["grad_norm"], norms, atol=1e-5)
    assert torch.allclose(gp["penalty"], (norms - 1) ** 2, atol=1e-4)
    assert gp["penalty"][0].item() == pytest.approx((3.5 * math.sqrt(5) - 1) ** 2, rel=1e-5)
    (got,) = torch.autograd.grad(gp["penalty"].sum(), w)
    o_hat = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    closed = ((2 * (o_hat @ w).abs() * w.norm() - 1) ** 2).sum()
    (want,) = torch.autograd.grad(closed, w)
    assert torch.allclose(got, want, atol=1e-4)


def test_gradient_penalty_vanishes_for_a_unit_norm_linear_critic():
    """A linear critic with a unit-norm weight is 1-Lipschitz with ||grad|| = 1 everywhere;
    with ||w|| = 3 the penalty is (3 - 1)^2 = 4. Inputs are left untouched (out of place)."""
    torch.manual_seed(0)
    w = torch.randn(1 * 28 * 28)
    real, fake = torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28, requires_grad=True)
    before = real.clone(), fake.detach().clone()
    for scale, expected in ((1.0, 0.0), (3.0, 4.0)):
        v = scale * w / w.norm()
        gp = losses.gradient_penalty(lambda o, v=v: o.flatten(1) @ v, real, fake)
        assert torch.allclose(gp["penalty"], torch.full((6,), expected), atol=1e-5)
    assert torch.equal(real, before[0]) and torch.equal(fake.detach(), before[1])
    assert fake.grad is None and not real.requires_grad


def test_mi_terms_are_nats_of_mutual_information():
    """Eq. 10 plus H(u): a perfect d-head gives log k, a uniform one 0; a Gaussian head with
    mean c and unit variance gives H(N(0, I)) - m/2 log(2 pi) = m/2."""
    c = torch.randn(5, 3)
    d = torch.tensor([0, 1, 2, 3, 0])
    sure = torch.nn.functional.one_hot(d, 4).float() * 50
    mi = losses.infogan_mi(c, c, torch.zeros(5, 3), d, sure)
    assert torch.allclose(mi["mi_d"], torch.full((5,), math.log(4)), atol=1e-5)
    assert torch.allclose(mi["mi_c"], torch.full((5,), 1.5), atol=1e-5)
    assert torch.allclose(mi["mi"], mi["mi_c"] + mi["mi_d"])
    flat = losses.infogan_mi(c, c + 1, torch.zeros(5, 3), d, torch.zeros(5, 4))
    assert torch.allclose(flat["mi_d"], torch.zeros(5), atol=1e-6)
    assert torch.allclose(flat["mi_c"], torch.zeros(5), atol=1e-5)  # 1.5 - 3 * 0.5


def test_maximising_l_mi_lets_s_recover_the_discrete_code():
    """G and S maximising eq. 10 (the generator player's MI part, with its c term weighted by
    mi_c_weight) for a hundred small steps: L_MI rises and S reads the category G was given
    from G's images far better than chance (1/4). The adversarial part is left out: against
    a critic that does not train, it only drives every image the same way."""
    model = _model()
    cfg = model.config
    opt = model.make_optimizers()["generator"]

    def terms(n):
        z, c, d = model.prior(n)
        mu, logvar, logits = model.aux(torch.sigmoid(model.generator(z, c, model._one_hot(d))))
        return losses.infogan_mi(c, mu, logvar, d, logits), (logits.argmax(1) == d).float()

    def measure():
        torch.manual_seed(1)
        with torch.no_grad():
            mi, hit = terms(256)
        return float(mi["mi_d"].mean()), float(hit.mean())

    mi0, acc0 = measure()
    torch.manual_seed(0)
    for _ in range(100):
        mi, _ = terms(32)
        loss = -(cfg.mi_c_weight * mi["mi_c"] + mi["mi_d"]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    mi1, acc1 = measure()
    assert acc0 < 0.45 and acc1 > 0.8, (acc0, acc1)
    assert mi1 > mi0 + 0.5 and mi1 <= math.log(4) + 1e-6


# -- eqs. 3-7: generative replay -----------------------------------------------------------


def test_previous_generator_is_frozen_and_replay_is_one_over_k_plus_one(tasks):
    model = _model()
    events = model.before_task(0, tasks[0])
    assert model.previous is None and events[0]["pi"] == 1.0
    _train(model, 0, tasks[0], steps=3, bs=16)
    trained = _state(model.generator)
    x = tasks[1].x[:8]
    for t in (1, 2):
        events = model.before_task(t, tasks[t])
        assert [e["type"] for e in events] == ["generator_frozen", "replay", "replay_recorded"]
        pi = next(e for e in events if e["type"] == "replay")["pi"]
        assert pi == pytest.approx(1 / (t + 1)) == model.real_fraction(t)
        mixed = model.mixed_batch(x, t)
        assert mixed.shape == (8 * (t + 1), *x.shape[1:]) and torch.equal(mixed[:8], x)
        with torch.no_grad():  # the penalty's input gradient works under no_grad too
            assert float(model.loss({"x": x}, t)["pi"]) == pytest.approx(1 / (t + 1))
        if t == 1:  # the frozen copy is the generator as task 0 left it
            for k, v in model.previous.state_dict().items():
                assert torch.equal(v, trained[k]), k
        before = _state(model.previous)
        opt = model.make_optimizers()
        owned = {id(p) for o in opt.values() for g in o.param_groups for p in g["params"]}
        assert not owned & {id(p) for p in model.previous.parameters()}
        _train(model, t, tasks[t], steps=3, bs=16)
        for k, v in model.previous.state_dict().items():
            assert torch.equal(v, before[k]), k  # bit-identical after training task t
        assert all(p.grad is None and not p.requires_grad for p in model.previous.parameters())
        assert not model.previous.training
        assert not torch.equal(model.generator.head.net[0].weight, before["head.net.0.weight"])
    assert model.arch() == {"previous": 1}


def test_without_replay_nothing_is_mixed_in(tasks):
    model = _model(replay=False)
    for t in range(2):
        events = model.before_task(t, tasks[t])
        assert [e.to_dict() for e in events] == [
            {"type": "replay", "task": t, "pi": 1.0, "replay_fraction": 0.0}
        ]
    assert model.previous is None and model.arch() == {"previous": 0}
    assert torch.equal(model.mixed_batch(tasks[1].x[:8], 1), tasks[1].x[:8])
    assert model.replayed_samples() == {}


def test_replay_is_recorded_per_task_and_survives_a_rebuild(tasks):
    model = _model()
    for t, data in enumerate(tasks):
        model.before_task(t, data)
        if t:
            g = torch.Generator().manual_seed(4000 + t)  # the seed before_task uses
            expected = model.replay(4, g)
            assert (model.replayed_samples()[t] - expected).abs().max() <= 0.5 / 255 + 1e-6
        _train(model, t, data, steps=2, bs=16)
        model.after_task(t, data)
    grids = model.replayed_samples()
    assert sorted(grids) == [1, 2] and not torch.equal(grids[1], grids[2])
    rebuilt = InfoGAN(model.config, model.arch())
    rebuilt.load_state_dict(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k
    assert not any(p.requires_grad for p in rebuilt.previous.parameters())
    assert torch.equal(forgetting.replayed(rebuilt)[2], grids[2])


# -- training and inference ----------------------------------------------------------------


def test_two_players_step_and_a_non_finite_loss_steps_nothing(tasks):
    model = _model(n_critic=3)
    model.before_task(0, tasks[0])
    opt = model.make_optimizers()
    assert set(opt) == {"critic", "generator"}
    assert all(o.param_groups[0]["betas"] == (0.5, 0.9) for o in opt.values())
    before = _state(model)
    terms = model.train_step({"x": tasks[0].x[:16]}, 0, opt)
    assert {"total", "critic", "generator", "wasserstein", "gp", "mi", "mi_c", "mi_d"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    assert opt["critic"].state[next(model.critic.parameters())]["step"] == 3  # n_critic steps
    assert opt["generator"].state[next(model.generator.parameters())]["step"] == 1
    moved = _state(model)
    bad = tasks[0].x[:16].clone()
    bad[0, 0, 0, 0] = float("nan")
    terms = model.train_step({"x": bad}, 0, opt)
    assert not torch.isfinite(terms["total"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, moved[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in moved.items())


def test_s_is_the_inference_network_and_images_are_in_0_1(tasks):
    model = _model()
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=5, bs=16)
    model.after_task(0, tasks[0])
    model.eval()
    x = tasks[0].x[:6]
    with torch.no_grad():
        post = model.encode(x)
        assert list(post) == [b.name for b in model.latent_blocks()] == ["c", "d", "z"]
        assert post["c"]["mu"].shape == (6, 4) and post["d"]["logits"].shape == (6, 4)
        assert not post["z"]["mu"].any() and not post["z"]["logvar"].any()  # z = 0, the prior
        mu, _, logits = model.aux(x)
        codes = {"c": mu, "d": torch.nn.functional.one_hot(logits.argmax(1), 4).float()}
        recon = model.reconstruct(x)
        assert torch.equal(recon, model.decode({**codes, "z": torch.zeros(6, 4)}))
        assert torch.equal(recon, model.decode(codes))  # a missing z is 0
        score = model.score(x)
        logit = torch.log(recon) - torch.log1p(-recon)
        assert torch.allclose(score, losses.bernoulli_log_likelihood(logit, x), rtol=1e-3)
        assert torch.isfinite(score).all() and (score < 0).all()
        for imgs in (model.sample(32), model.sample(8, task=0), model.sample(8, task=2), recon):
            assert imgs.min() >= 0 and imgs.max() <= 1 and imgs.shape[1:] == (1, 28, 28)
    assert model.task_codes[0].sum() == pytest.approx(1.0) and model.task_codes[1].sum() == 0
    assert "S infers c and d" in model.inference_note and REGISTRY["infogan"][0] is InfoGAN
    # The Generation grid: d along the columns, a c variable first among the rows (Fig. 3).
    assert generation.column_sources(model) == ["d"]
    assert generation.continuous_variables(model, "d")[0] == ("c", 0)


def test_cli_run_snapshots_replay_and_its_views(tmp_path):
    out = cli_run(tmp_path, "infogan", "--set", "n_critic=2")
    run = open_run(out)
    assert [s["arch"] for s in run.manifest["snapshots"]] == [{"previous": 0}, {"previous": 1}]
    types = {e["type"] for e in json.loads((out / "manifest.json").read_text())["events"]}
    assert {"generator_frozen", "replay", "replay_recorded", "code_usage"} <= types
    elbo = run.manifest["metrics"]["elbo"]
    assert len(elbo) == 2 and all(v is not None for row in elbo for v in row)
    m = run.load_model()
    assert sorted(forgetting.replayed(m)) == [1]
    assert not any(p.requires_grad for p in m.previous.parameters())
    imgs, labels = generation.grid(m, "d", ("c", 0), [-1.0, 0.0, 1.0])
    assert labels == [f"d={k}" for k in range(10)] and imgs.shape == (30, 1, 28, 28)
    assert run.load_model(0).previous is None


@pytest.mark.slow
def test_replay_keeps_the_first_task_and_no_replay_forgets_it():
    """Paper 003 Fig. 2 on digits then shapes: after the second task, a classifier trained on
    real images calls far more of the replaying generator's samples digits than those of the
    same model trained without replay, and their Frechet distance (pixels) to real digits is
    smaller."""
    from sklearn.linear_model import LogisticRegression

    from lifelong import data as ldata
    from lifelong import metrics

    names = ("digits", "shapes")
    tr = [ldata.load_task(n, "train", 0) for n in names]
    te = [ldata.load_task(n, "test", 0) for n in names]
    x = torch.cat([tr[0].x, tr[1].x[: len(tr[0].x)]]).flatten(1).numpy()
    y = [0] * len(tr[0].x) + [1] * len(tr[0].x)
    clf = LogisticRegression(max_iter=300, C=0.1).fit(x, y)
    xt = torch.cat([te[0].x, te[1].x[: len(te[0].x)]]).flatten(1).numpy()
    assert clf.score(xt, [0] * len(te[0].x) + [1] * len(te[0].x)) > 0.95
    out = {}
    for replay in (True, False):
        model = _model(n_tasks=2, replay=replay, lr=1e-3, n_critic=2)
        for t in range(2):
            model.before_task(t, tr[t])
            _train(model, t, tr[t], steps=300, bs=32)
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            s = model.sample(500).flatten(1).numpy()
        fd = metrics.frechet_from_features(s, te[0].x.flatten(1).numpy())
        out[replay] = (float((clf.predict(s) == 0).mean()), fd)
    print("digit share / FD to digits (replay, no replay):", out[True], out[False])
    assert out[True][0] > 0.25 and out[True][0] > out[False][0] + 0.2, out
    assert out[True][1] < out[False][1], out
