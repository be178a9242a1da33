"""MVAE (paper 002): the mechanisms, and its claims on small seeded runs."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong import hsic, losses
from lifelong.models import build
from lifelong.models import dropout as cdrop
from lifelong.models.mvae import MVAEConfig
from tests.conftest import synthetic_task

TINY = {"latent_dim": 4, "hidden": 32, "channels": 8}


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build("mvae", MVAEConfig(**{**TINY, **kw}))


def _train(model, x, steps, bs=64, lr=2e-3, seed=0, epoch_every=None, at=None):
    """Adam on random batches; epoch_stats() (where pruning happens) every `epoch_every` steps;
    at = {step: fn}: fn(model) after that many steps, in eval mode without gradients."""
    opt = torch.optim.Adam(model.trainable_parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    stats = []
    for i in range(steps):
        model.progress = i / steps
        idx = torch.randint(len(x), (bs,), generator=g)
        loss = model.loss({"x": x[idx]}, 0)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if epoch_every and (i + 1) % epoch_every == 0:
            stats.append(model.epoch_stats())
        if at and i + 1 in at:
            model.eval()
            with torch.no_grad():
                at[i + 1](model)
            model.train()
    return stats


def _bars(n=256, seed=0):
    """Horizontal and vertical bars together: two factors (orientation, position)."""
    h, v = synthetic_task("hbar", n // 2, seed), synthetic_task("vbar", n // 2, seed + 1)
    return torch.cat([h.x, v.x])


def _sse(a, b) -> float:
    return float((a - b).pow(2).flatten(1).sum(1).mean())


# -- mechanisms -------------------------------------------------------------------------------
def test_dirichlet_kl_is_eq28_and_matches_torch():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 4, generator=g) * 3 + 0.1
    b = torch.rand(4, generator=g) * 2 + 0.2
    ref = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(a), torch.distributions.Dirichlet(b.expand(5, 4))
    )
    assert torch.allclose(losses.dirichlet_kl(a, b), ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(losses.dirichlet_kl(b[None], b), torch.zeros(1), atol=1e-6)


def test_dirichlet_rsample_gradients_reach_the_concentrations():
    """Eq. 26 with implicit reparameterisation: the pathwise gradient of E[w_0] matches the
    analytic d(a_0 / sum a)/da, and the model's loss reaches every Dirichlet head."""
    a = torch.tensor([1.5, 0.7, 2.0], requires_grad=True)
    torch.manual_seed(0)
    w = torch.distributions.Dirichlet(a.expand(40000, 3)).rsample()
    w[:, 0].mean().backward()
    s = float(a.detach().sum())
    analytic = torch.tensor([(s - 1.5) / s**2, -1.5 / s**2, -1.5 / s**2])
    assert torch.allclose(a.grad, analytic, atol=6e-3)

    model = _model(n_components=3)
    x = synthetic_task("hbar", 32).x
    model.loss({"x": x}, 0)["total"].backward()
    for head in model.dir_heads:
        assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0


def test_mixture_decode_is_eqs_4_to_6():
    """s = sum_i w_i t_i(z_i) through one mix-decoder: a one-hot w is that component alone."""
    model = _model(n_components=3).eval()
    g = torch.Generator().manual_seed(1)
    codes = {f"z{k}": torch.randn(5, 4, generator=g) for k in range(3)}
    with torch.no_grad():
        for k in range(3):
            one_hot = torch.nn.functional.one_hot(torch.full((5,), k), 3).float()
            mixed = model.decode({**codes, "w": one_hot})
            assert torch.allclose(mixed, model.decode({f"z{k}": codes[f"z{k}"]}, k), atol=1e-6)
        w = torch.tensor([[0.2, 0.3, 0.5]]).expand(5, 3)
        s = sum(w[:, k, None] * model.sub_decoders[k](codes[f"z{k}"]) for k in range(3))
        manual = torch.sigmoid(model.mix_body(model.mix_head(s)))
        assert torch.allclose(model.decode({**codes, "w": w}), manual, atol=1e-6)


def test_score_is_the_elbo_and_the_loss_adds_dhsic_and_dirichlet_kl(monkeypatch):
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    model = _model(n_components=3, beta=7.0)
    x = _bars(32)
    torch.manual_seed(5)
    elbo = model.score(x)
    torch.manual_seed(5)
    terms = model.loss({"x": x}, 0)
    z = [model.encode(x, k)[f"z{k}"]["mu"] for k in range(3)]
    # the regulariser's kernels: the median distance (hsic_bandwidth="distance", the default,
    # what runs without the field were trained with), floored
    assert model.config.hsic_bandwidth == "distance"
    bw = [max(hsic.median_bandwidth(c, "distance"), model.config.hsic_min_bandwidth) for c in z]
    expected = -elbo.mean() + 7.0 * hsic.dhsic(z, bw)
    assert torch.allclose(terms["total"], expected, rtol=1e-5)
    assert torch.allclose(-elbo.mean(), terms["rec"] + terms["kl"] + terms["kl_w"], rtol=1e-5)


def test_hsic_bandwidth_dhsic_uses_the_r_package_heuristic():
    model = _model(n_components=3, beta=1.0, hsic_bandwidth="dhsic", hsic_min_bandwidth=0.0)
    x = _bars(32)
    z = [model.encode(x, k)[f"z{k}"]["mu"] for k in range(3)]
    reg = model.independence(z)
    assert torch.allclose(reg, hsic.dhsic(z), rtol=1e-5)  # R dHSIC's bandwidths
    assert not torch.allclose(reg, hsic.dhsic(z, heuristic="distance"), rtol=1e-3)
    # a run's config without the field (made before it existed) keeps the old kernels
    from lifelong.models import config_from_dict, config_to_dict

    old = config_to_dict(MVAEConfig(**TINY))
    del old["hsic_bandwidth"]
    assert config_from_dict(MVAEConfig, old).hsic_bandwidth == "distance"
    with pytest.raises(ValueError, match="^hsic_bandwidth must be 'dhsic' or 'distance'"):
        MVAEConfig(hsic_bandwidth="median").validate()


def test_gs_mask_is_eq22_and_the_dropout_rate_is_learnable():
    torch.manual_seed(0)
    logit = torch.tensor([math.log(0.3 / 0.7)])
    m = losses.relaxed_keep_mask(logit, 0.1, (20000, 1))
    assert abs(float(m.mean()) - 0.7) < 0.02  # a relaxed Bernoulli(1 - p)
    assert float(((m < 0.05) | (m > 0.95)).float().mean()) > 0.85  # T = 0.1: nearly binary

    model = _model(n_components=3, dropout="gs")
    assert any(p is model.drop_logit for p in model.trainable_parameters())
    x = _bars(64)
    model.loss({"x": x}, 0)["total"].backward()
    assert float(model.drop_logit.grad.abs().min()) > 0  # every component's rate gets a gradient
    # Eq. 23's entropy alone moves every rate towards 0.5.
    opt = torch.optim.Adam([model.drop_logit], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        (-losses.bernoulli_entropy(model.dropout_rates()).sum()).backward()
        opt.step()
    assert torch.allclose(model.dropout_rates(), torch.full((3,), 0.5), atol=0.02)
    fixed = _model(n_components=3)  # dropout="none": fixed K, the rate is not a parameter
    assert not any(p is fixed.drop_logit for p in fixed.trainable_parameters())


def test_gau_dropout_is_eqs_18_19():
    tau = torch.linspace(0.05, 1.0, 20)
    kl = losses.gaussian_dropout_kl(tau)
    assert float(kl[-1]) == pytest.approx(0.0, abs=1e-6)
    assert bool((kl[:-1] > kl[1:]).all())  # decreasing on (0, 1]: the KL favours more noise
    model = _model(n_components=3, dropout="gau", dropout_init=0.2)
    torch.manual_seed(0)
    m = model._masks([0, 1, 2], 20000)
    assert float(m.mean()) == pytest.approx(1.0, abs=0.02)  # N(1, tau), tau = 0.25
    # keep_scores: E[clip(m, 0, 1)] in closed form, against Monte Carlo.
    s = math.sqrt(0.25)
    mc = (1 + s * torch.randn(200000)).clamp(0, 1).mean()
    assert float(model.keep_scores()[0]) == pytest.approx(float(mc), abs=3e-3)


def test_pruned_components_stay_inactive_and_contribute_nothing():
    model = _model(n_components=3, dropout="gs")
    with torch.no_grad():
        model.drop_logit[1] = 3.0  # p = 0.95: E[m] = 0.05
    assert model.prune() == []  # not in the first half of a phase (prune_start)
    model.progress = 0.6
    assert model.prune() == [1]
    assert model.experts() == [0, 2] and [b.owner for b in model.latent_blocks()] == [0, 2]
    x = _bars(16)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        before = (model.reconstruct(x), model.score(x), model.route(x))
        for prm in model.enc_bodies[1].parameters():
            prm.add_(torch.randn_like(prm))
        for prm in model.sub_decoders[1].parameters():
            prm.add_(torch.randn_like(prm))
        torch.manual_seed(3)
        after = (model.reconstruct(x), model.score(x), model.route(x))
    for u, v in zip(before, after, strict=True):
        assert torch.equal(u, v)
    assert float(after[2][:, 1].abs().max()) == 0.0
    # Training goes on without it: no gradient, no update, and it is never revived.
    model.train()
    frozen = [p.clone() for p in model.enc_heads[1].parameters()]
    params = model.trainable_parameters()
    assert not any(p is q for p in params for q in model.enc_heads[1].parameters())
    _train(model, x, steps=5)
    now = list(model.enc_heads[1].parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen, now, strict=True))
    assert not bool(model.active[1]) and model.prune() == []
    # The buffer travels with the weights: a rebuilt model has the same components.
    fresh = build("mvae", model.config)
    fresh.load_state_dict(model.state_dict())
    assert fresh.experts() == [0, 2]


def test_sampled_prune_score_is_sec_vg_literal_test_on_one_eq22_mask():
    """prune_score="sampled": one relaxed keep mask per component and check (eq. 22 at T), pruned
    below the paper's 0.1; nearly binary at T = 0.1, so a component goes with probability ~p
    at each check, whatever the reconstruction needs."""
    model = _model(n_components=4, dropout="gs", prune_score="sampled")
    with torch.no_grad():
        model.drop_logit[:] = torch.tensor([-6.0, -6.0, 0.0, 6.0])  # p = .0025, .0025, .5, .9975
    draws = torch.stack(
        [cdrop.sampled_keep_scores(model.drop_logit, "gs", 0.1, s) for s in range(400)]
    )
    assert ((draws < 0.05) | (draws > 0.95)).float().mean() > 0.85  # nearly 0 or 1
    below = (draws < 0.1).float().mean(0)  # how often each would be pruned at one check
    assert float(below[0]) < 0.02 and float(below[3]) > 0.98
    assert 0.35 < float(below[2]) < 0.65  # a coin flip at p = 0.5
    # seeded: the same draw in every process, and the training stream is left alone
    torch.manual_seed(1)
    a = cdrop.sampled_keep_scores(model.drop_logit, "gs", 0.1, 5)
    after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), after)
    assert torch.equal(a, cdrop.sampled_keep_scores(model.drop_logit, "gs", 0.1, 5))
    model.progress = 0.9
    pruned = model.prune()
    assert 3 in pruned and 0 not in pruned and 1 not in pruned
    assert all(e["threshold"] == 0.1 for e in model._pruned)
    expected = _model(n_components=4, dropout="gs")  # the default: 1 - p against 0.6
    with torch.no_grad():
        expected.drop_logit[:] = model.drop_logit
    expected.progress = 0.9
    assert expected.prune() == [3, 2]
    with pytest.raises(ValueError, match="'expected' or 'sampled'"):
        MVAEConfig(prune_score="mean").validate()


def test_pruning_respects_min_components_and_dropout_none():
    model = _model(n_components=3, dropout="gs", min_components=2)
    with torch.no_grad():
        model.drop_logit[:] = torch.tensor([3.0, 4.0, 0.0])
    model.progress = 0.9
    assert model.prune() == [1]  # the lowest keep score goes first, then the floor stops it
    none = _model(n_components=3)
    assert none.prune() == [] and none.epoch_stats()["active_components"] == 3.0


def test_route_interpolate_and_mismatch():
    model = _model(n_components=3).eval()
    x = _bars(8)
    with torch.no_grad():
        r = model.route(x)
        a = torch.stack([model._encode(k, x)[2] for k in range(3)], 1)
        assert torch.allclose(r, a / a.sum(1, keepdim=True))  # the mean of Dir(a(x))
        assert torch.equal(model.select(x), r.argmax(1))
        path = model.interpolate(x[:1], x[1:2], steps=5)
        assert path.shape == (5, 1, 28, 28)
        assert torch.allclose(path[0], model.reconstruct(x[:1])[0], atol=1e-6)  # eqs. 33-35
        assert torch.allclose(path[-1], model.reconstruct(x[1:2])[0], atol=1e-6)
        assert not torch.allclose(model.interpolate(x[:1], x[1:2], 5, shift=1), path)  # eq. 36
        own = model.decode_mismatched(x, 2, 2)
        assert torch.allclose(own, model.reconstruct(x, expert=2), atol=1e-6)


def test_training_phases_and_config_checks():
    assert _model().training_phases(3) == [[0, 1, 2]]
    assert _model(sequential=True).training_phases(3) == [[0], [1], [2]]
    for bad in ({"dropout": "bernoulli"}, {"hsic_form": "max"}, {"min_components": 9}):
        with pytest.raises(ValueError):
            MVAEConfig(**bad).validate()
    with pytest.raises(ValueError):
        MVAEConfig(dropout="gau", dropout_init=0.6).validate()  # Gau needs tau = p/(1-p) < 1


def test_cli_train_eval_and_explore(tmp_path, capsys):
    from lifelong.__main__ import main
    from lifelong.explore import experts, interpolate, traversal
    from lifelong.runs import open_run
    from lifelong.train.trainer import read_log

    out = tmp_path / "mvae"
    argv = ["train", "--model", "mvae", "--tasks", "digits:classes=0-4,digits:classes=5-9"]
    argv += ["--epochs", "1", "--out", str(out), "--device", "cpu"]
    argv += ["--set", "latent_dim=4", "--set", "hidden=32", "--set", "channels=8"]
    argv += ["--set", "n_components=3", "--set", "dropout=gs"]
    assert main(argv) == 0
    assert main(["eval", str(out)]) == 0
    capsys.readouterr()
    run = open_run(out)
    assert [s["after_task"] for s in run.manifest["snapshots"]] == [1]  # one joint phase
    epochs = [r for r in read_log(out / "log.jsonl") if r.get("kind") == "epoch"]
    assert {"dropout_rate", "active_components", "p0"} <= set(epochs[-1])
    m = run.load_model()
    x = torch.rand(1, 1, 28, 28)
    s = traversal.start_from_image(m, x)
    grid, _ = traversal.sweep(m, s, [-3, 0, 3])
    assert torch.isfinite(grid).all()
    traversal.start_from_prior(m, None)
    traversal.start_from_prior(m, m.experts()[0])
    assert experts.mismatched(m, x).shape[:2] == (3, 3)
    strip = interpolate.strip(m, x, torch.rand(1, 1, 28, 28), 4, encoder=0, decoder=1)
    assert strip.shape == (4, 1, 28, 28)


# -- claims (small seeded runs on the embedded digits) ------------------------------------------
def _images(data: str = "digits"):
    """(training images, 256 test images) of the embedded digits or, for the real-data cases,
    Fashion-MNIST (skipped where dataset-fashion-mnist is not installed). The steps are drawn
    from random batches, so a case costs the same on either."""
    from lifelong import data as ld
    from tests.conftest import fashion_or_skip

    spec = ld.parse_tasks(data)[0]
    if data == "fashion":
        fashion_or_skip([spec])
    return ld.load_task(spec, "train", 0).x, ld.load_task(spec, "test", 0).x[:256]


def _trained(x, steps, seed=0, epoch_every=None, at=None, **kw):
    model = _model(seed, **kw)
    stats = _train(model, x, steps, seed=seed, epoch_every=epoch_every, at=at)
    return model.eval(), stats


# Measured on Fashion-MNIST at this test's tiny networks (one thread, seeds 0-1, summed): mean
# pairwise HSIC at 1200 steps .0103 with beta = 10 against .0105 with beta = 0, at 2400 .0085
# against .0052. The shipped Fashion-MNIST runs (16 channels, 10 latents, 5 epochs) separate
# them 1.3x, the MVAE-GS pair 1.8x (docs/claims.md): the effect needs the larger networks.
TINY_FASHION = pytest.mark.xfail(
    strict=True,
    reason="at the tiny networks dHSIC does not separate Fashion-MNIST components (measured "
    "above); strict: this fails loudly if it starts to hold",
)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", pytest.param("fashion", marks=TINY_FASHION)])
def test_claim_dhsic_separates_the_components_latent_spaces(data):
    """Figs. 12-13: with beta = 10 the components' codes depend on each other clearly less than
    with beta = 0 (mean pairwise HSIC of the posterior means of test digits, median-distance
    bandwidths: hsic heuristic="distance"), and the regulariser's reconstruction cost is
    transient: trained on equally long, both reach a similar error. Two seeds per beta, summed.

    Measured (one CPU thread; HSIC sums beta=10 / beta=0, SSE sums beta=10 / beta=0):
      1200 steps  HSIC .0062 / .0200 (0.31x)   SSE 42.9 / 34.6 (1.24x; the old test: 1.26x)
      2400 steps  HSIC .0060 / .0085 (0.71x)   SSE 25.0 / 21.1 (1.18x)
      seed 0 alone, SSE 1.30x, 1.21x, 1.16x, 1.15x, 1.14x at 1200..3600 steps.
    With beta = 10 the components start using their codes later (KL 1.8 vs 3.7 nats after
    600 steps), so at 1200 steps the beta = 10 mixture is behind, not worse: the gap shrinks
    as both train on. The separation is largest early: the beta = 0 components also drift
    towards independence as they converge (seed 0: .0124 -> .0028 from 600 to 3600 steps)
    until both sit near the V-statistic's floor (~1e-3 at n = 256) and single checkpoints
    scatter (seed 0, beta = 10 vs 0 at 3000 steps: .0039 vs .0020). So the HSIC is read at
    1200 steps and the error at 2400, from the same runs."""
    x, xt = _images(data)
    hs, err, late = {}, {}, {}
    for beta in (0.0, 10.0):
        hs[beta], err[beta], late[beta] = [], [], []

        def pairwise(model, out):
            z = [model.encode(xt, k)[f"z{k}"]["mu"] for k in model.experts()]
            # the median-distance bandwidths the figures above were measured with
            res = hsic.hsic_matrix(z, heuristic="distance")
            out.append(float(hsic.mean_pairwise(res.matrix)))

        for seed in (0, 1):
            at = {1200: lambda m, b=beta: pairwise(m, hs[b])}
            model, _ = _trained(x, 2400, seed, at=at, n_components=4, beta=beta)
            with torch.no_grad():
                pairwise(model, late[beta])
                err[beta].append(_sse(model.reconstruct(xt), xt))
    print(f"\nmean pairwise HSIC at 1200 steps {hs}, at 2400 {late}; SSE at 2400 {err}")
    assert sum(hs[10.0]) < 0.6 * sum(hs[0.0])
    assert sum(err[10.0]) < 1.25 * sum(err[0.0])


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "fashion"])
def test_claim_mixture_beats_its_components_and_mismatches_fail(data):
    """Figs. 2-3 (MVAE-Gau, K = 4, as in Sec. V-A): the mixture reconstructs better than its
    best single component, and an encoder paired with another component's sub-decoder much
    worse than with its own."""
    x, xt = _images(data)
    model, _ = _trained(x, 1500, n_components=4, dropout="gau", prune_threshold=0.0)
    ks = model.experts()
    with torch.no_grad():
        mix = _sse(model.reconstruct(xt), xt)
        own = {k: _sse(model.reconstruct(xt, k), xt) for k in ks}
        cross = {(i, j): _sse(model.decode_mismatched(xt, i, j), xt) for i in ks for j in ks}
    mismatched = [v for (i, j), v in cross.items() if i != j]
    print(f"\nSSE mixture {mix:.1f}; components {own}; mismatched mean")
    print(f"{sum(mismatched) / len(mismatched):.1f} (min {min(mismatched):.1f})")
    assert mix < 0.8 * min(own.values())
    best = min(own, key=own.get)
    assert min(cross[best, j] for j in ks if j != best) > 1.5 * own[best]
    assert sum(mismatched) / len(mismatched) > 1.1 * sum(own.values()) / len(own)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "fashion"])
def test_claim_gs_dropout_selects_fewer_components_at_similar_error(data):
    """Table VI: MVAE-GS started at K = 6 ends with fewer active components, at an error close
    to the fixed-K mixture trained as long; Figs. 15-16's series come out of epoch_stats.

    On Fashion-MNIST the dropout rates stay near their start for 2,000 steps (no pruning), so
    that case trains 5,000: pruning starts after ~2,500 (6 -> 4 components), and p falls a
    little first (0.115 -> 0.106) instead of rising as in Fig. 15, which holds on the digits."""
    x, xt = _images(data)
    steps = 5000 if data == "fashion" else 2000
    gs, stats = _trained(x, steps, n_components=6, dropout="gs", epoch_every=steps // 20)
    fixed, _ = _trained(x, steps, n_components=6)
    with torch.no_grad():
        e_gs, e_fixed = _sse(gs.reconstruct(xt), xt), _sse(fixed.reconstruct(xt), xt)
    counts = [s["active_components"] for s in stats]
    rates = [round(s["dropout_rate"], 3) for s in stats]
    print(f"\nactive per {steps // 20} steps {counts}\ndropout rate {rates}")
    print(f"SSE MVAE-GS ({len(gs.experts())} components) {e_gs:.1f}, fixed K=6 {e_fixed:.1f}")
    assert counts[0] == 6 and counts[-1] < 6 and counts == sorted(counts, reverse=True)
    if data == "digits":
        assert rates[len(rates) // 4] > rates[0]  # p rises first (Fig. 15)
    assert e_gs < 1.25 * e_fixed
