"""CPVAE (paper 004): additive decoder, eq. 6's cross-population KL, alpha annealing, eqs. 7-8
classification, Sec. 4.4's sequential phases, and the claims of Tables 1-2 (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong import losses, metrics
from lifelong.data import join_tasks, load_task
from lifelong.models import build
from lifelong.models.cpvae import CPVAEConfig, cross_population_kl, translate
from lifelong.models.vae import VAEConfig
from tests.conftest import synthetic_task

TINY = dict(latent_dim=4, private_dim=4, hidden=32, channels=8)


def _model(n=2, **kw):
    torch.manual_seed(0)
    return build("cpvae", CPVAEConfig(n_tasks=n, **{**TINY, **kw}))


def _pops(kinds=("hbar", "vbar", "blob"), n=96):
    """Synthetic populations as one joined batch source: x [P*n, ...], task [P*n]."""
    xs = [synthetic_task(k, n, seed=i).x for i, k in enumerate(kinds)]
    task = torch.cat([torch.full((n,), i) for i in range(len(kinds))])
    return torch.cat(xs), task


def _train(model, x, task, epochs, bs=64, seed=0):
    """What the trainer does for one phase: before_task, per-batch train_step, epoch_stats."""
    data = type("D", (), {"x": x, "task": task})()
    model.before_task(int(task.max()), data)
    opt = model.make_optimizers()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            idx = perm[i : i + bs]
            model.train_step({"x": x[idx], "task": task[idx]}, int(task.max()), opt)
        model.epoch_stats()
    model.after_task(int(task.max()), data)
    return model.eval()


def _fit(model, parts, epochs):
    data = join_tasks(parts, list(range(len(parts))))
    return _train(model, data.x, data.task, epochs)


def _grads(model, loss, params):
    return torch.autograd.grad(loss, list(params), allow_unused=True, retain_graph=True)


def test_blocks_encode_and_phases():
    m = _model(3)
    assert m.experts() == [] and m.populations() == [0, 1, 2]
    assert [(b.name, b.dim, b.owner) for b in m.latent_blocks()] == [
        ("z", 4, "shared"), ("t0", 4, 0), ("t1", 4, 1), ("t2", 4, 2)
    ]  # fmt: skip
    x = torch.rand(5, 1, 28, 28)
    assert set(m.encode(x)) == {"z", "t0", "t1", "t2"} and set(m.encode(x, 1)) == {"z", "t1"}
    assert m.training_phases(3) == [[0, 1, 2]]  # Algorithm 1: all populations together
    assert _model(3, sequential=True).training_phases(3) == [[0], [1], [2]]
    assert _model(5, sequential=True, first_phase=2).training_phases(5) == [
        [0, 1],
        [2],
        [3],
        [4],
    ]  # fmt: skip  (Sec. 4.4: tasks 1-2 together, then one by one)


def test_additive_decoder_in_logit_space():
    """Eq. 1 with g(a, b) = a + b before the sigmoid; f_k(0) = 0, so a zero private code is
    exactly the shared-only path, and the parts of reconstruct_parts add up in logits."""
    m = _model()
    z, t = torch.randn(6, 4), torch.randn(6, 4)
    with torch.no_grad():
        shared = m.shared_logits(z)
        zero = m.private_logits(torch.zeros(6, 4), 1)  # 0 up to float32 rounding (~1e-8)
        assert zero.abs().max() < 1e-6
        only_z = torch.sigmoid(shared)
        assert torch.allclose(m.decode({"z": z, "t1": torch.zeros(6, 4)}), only_z, atol=1e-6)
        assert torch.equal(m.decode({"z": z}), only_z)
        full = m.decode_logits({"z": z, "t1": t})
        assert torch.allclose(full, shared + m.private_logits(t, 1), atol=1e-6)
        assert torch.allclose(m.decode({"z": z, "t0": t, "t1": t}, expert=1), torch.sigmoid(full))
        x = torch.rand(6, 1, 28, 28)
        p = m.reconstruct_parts(x, population=0)
        logit = lambda v: torch.log(v) - torch.log1p(-v)  # noqa: E731
        assert torch.allclose(logit(p["full"]), logit(p["shared"]) + logit(p["private"]), atol=1e-3)
        assert torch.equal(p["full"], m.reconstruct(x, expert=0))
        # cross-population decoding into the own population is the reconstruction; a swap of
        # shared codes keeps a's private logits and takes b's shared ones
        assert torch.allclose(m.decode_cross(x, 0, 0), p["full"], atol=1e-6)
        a_on_b, _ = m.swap_shared(x[:3], x[3:], 0, 1)
        pb = m.reconstruct_parts(x[3:], population=1)
        want = logit(pb["shared"]) + logit(p["private"][:3])
        assert torch.allclose(logit(a_on_b), want, atol=1e-3)


def test_cross_population_kl_formula():
    """Balanced batch: each sample pays the mean KL of the *other* populations' encoders; its
    own encoder's KL has zero gradient; one population alone pays nothing."""
    kl = torch.rand(6, 3, requires_grad=True)
    pop = torch.tensor([0, 0, 1, 1, 2, 2])
    c = cross_population_kl(kl, pop)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[torch.arange(6), pop] = False
    assert torch.allclose(c, (kl * mask).sum(1) / 2)
    (grad,) = torch.autograd.grad(c.sum(), kl)
    assert torch.all(grad[torch.arange(6), pop] == 0) and torch.all(grad[mask] > 0)
    # unbalanced: population k's encoder is weighted by B_k / B_j (eq. 6's n_k / n_j)
    pop = torch.tensor([0, 0, 0, 1])
    c = cross_population_kl(kl[:4, :2], pop)
    assert torch.allclose(c.mean(), (0.75 * kl[3, 0] + 0.25 * kl[:3, 1].mean()).detach() * 1)
    assert torch.equal(cross_population_kl(kl[:2], torch.tensor([1, 1])), torch.zeros(2))


def test_private_kl_of_eq6_uses_only_other_populations_data():
    m = _model()
    x, task = _pops(("hbar", "vbar"), 32)
    head0 = list(m.private_heads[0].parameters())
    terms = m.loss({"x": x, "task": task}, 1)
    g = _grads(m, terms["cross_kl"], head0)
    assert all(v is not None and v.abs().sum() > 0 for v in g)
    # population 0's images changed: head 0's cross-KL gradient does not move at all
    x2 = x.clone()
    x2[task == 0] = torch.rand_like(x2[task == 0])
    g2 = _grads(m, m.loss({"x": x2, "task": task}, 1)["cross_kl"], head0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, g2, strict=True))
    # a batch of population 0 alone: no KL reaches head 0 under eq. 6 (only reconstruction),
    # while the plain ELBO (eq. 3, "NO MI") charges its own KL
    only = {"x": x[task == 0], "task": task[task == 0]}
    for objective, kl_reaches_head in (("mi", False), ("elbo", True)):
        m = _model(objective=objective)
        torch.manual_seed(5)
        t = m.loss(only, 0)
        g_total = _grads(m, t["total"], m.private_heads[0].parameters())
        g_rec = _grads(m, t["rec"], m.private_heads[0].parameters())
        same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_total, g_rec, strict=True))
        assert same != kl_reaches_head, objective


def test_alpha_schedule_follows_app_b1():
    m = _model()
    assert m.alpha() == 1.0
    stats = [m.epoch_stats()["alpha"] for _ in range(4)]
    assert stats == pytest.approx([1.0, 1.1, 1.21, 1.331])
    for _ in range(100):
        m.epoch_stats()
    assert m.alpha() == 1000.0  # min(1.1^e, 1000)
    x, task = _pops(("hbar", "vbar"), 8)
    m.before_task(1, type("D", (), {"task": task})())
    assert m.alpha() == 1.0  # e counts epochs of the phase
    assert m.loss({"x": x, "task": task}, 1)["alpha"] == 1.0
    fixed = _model(alpha_anneal=False, alpha=3.0)
    fixed.epoch_stats()
    assert fixed.alpha() == 3.0
    # alpha_epoch_images: e = images trained on // n, read at each epoch's end (App. B.1's
    # epochs in MNIST-sized units of training time); evaluation passes do not count
    timed = _model(alpha_epoch_images=20)
    timed.before_task(1, type("D", (), {"task": task})())
    for _ in range(3):  # 16 images per epoch
        timed.loss({"x": x, "task": task}, 1)
        with torch.no_grad():
            timed.loss({"x": x, "task": task}, 1)
        timed.epoch_stats()
    assert timed.alpha() == pytest.approx(1.1**2)  # 48 images // 20


def test_classification_and_is_estimate_on_digit_populations():
    """Eqs. 7-8 pick each population's own decoder (three digit classes, a short training);
    the importance-sampled log-likelihood (K = 64) is above the one-sample ELBO on average
    (it is the IWAE bound), and log_likelihood_is (lifelong.likelihood's hook) is its max."""
    classes = (0, 3, 6)
    m = _model(3, latent_dim=2)
    _fit(m, [load_task(f"digits:classes={c}", "train") for c in classes], 10)
    test = [load_task(f"digits:classes={c}", "test") for c in classes]
    xt = torch.cat([d.x for d in test])
    tt = torch.cat([torch.full((len(d),), k) for k, d in enumerate(test)])
    torch.manual_seed(0)
    assert (m.classify(xt) == tt).float().mean() > 0.8  # measured 0.93 (chance 0.33)
    ll = m.population_log_likelihoods(xt, samples=64)
    assert torch.isfinite(ll).all()
    own = ll.gather(1, tt[:, None]).squeeze(1)
    elbo = torch.cat([m.score(d.x, expert=k).detach() for k, d in enumerate(test)])
    assert own.mean() > elbo.mean()
    torch.manual_seed(3)
    hook = m.log_likelihood_is(xt[:4], 8)
    torch.manual_seed(3)
    assert torch.equal(hook, m.population_log_likelihoods(xt[:4], 8).max(1).values)


def test_is_estimate_equals_eq7_integral_by_quadrature():
    """Eq. 8 estimates eq. 7 itself: with 1-D z and t, log p(x | theta_k, theta_s) =
    log E_{N(z)N(t)} p(x | z, t) is a 2-D integral, computed here by Gauss-Hermite quadrature
    over the prior; the importance-sampled value through each population's own head and
    decoder lands on it (measured within 0.02 nats) for both populations."""
    m = _model(latent_dim=1, private_dim=1).eval()
    x = load_task("digits:classes=0-4", "test").x[:2]
    nodes, w = np.polynomial.hermite_e.hermegauss(60)  # weight exp(-v^2 / 2)
    log_w = torch.tensor(np.log(w / np.sqrt(2 * np.pi)), dtype=torch.float64)
    g = torch.tensor(nodes, dtype=torch.float32)
    zz, tt = torch.meshgrid(g, g, indexing="ij")
    log_w2 = (log_w[:, None] + log_w[None, :]).flatten()
    torch.manual_seed(1)
    est = m.population_log_likelihoods(x, 2048)
    with torch.no_grad():
        fs = m.shared_logits(zz.reshape(-1, 1))
        for k in range(2):
            logits = fs + m.private_logits(tt.reshape(-1, 1), k)  # eq. 1 on the grid
            for i in range(len(x)):
                xi = x[i : i + 1].expand(len(logits), -1, -1, -1)
                log_px = losses.bernoulli_log_likelihood(logits, xi).double()
                quad = torch.logsumexp(log_px + log_w2, 0).item()
                assert est[i, k].item() == pytest.approx(quad, abs=0.1), (k, i)
    assert (est[:, 0] - est[:, 1]).abs().max() > 0.5  # the populations do differ


def test_sequential_phases_keep_past_private_parts_and_lower_lr():
    m = _model(2, sequential=True)
    x, task = _pops(("hbar", "vbar"), 64)
    _train(m, x[task == 0], task[task == 0], epochs=2)
    assert m.seen.tolist() == [True, False]
    assert (m.classify(x) == 0).all()  # only learnt populations compete
    assert torch.isinf(m.population_log_likelihoods(x[:2])[:, 1]).all()
    mine = ("private_heads.0.", "private_decoders.0.")  # population 0's private parts
    past = {k: v.clone() for k, v in m.state_dict().items() if k.startswith(mine)}
    shared = m.shared_head.net[0].weight.clone()
    _train(m, x[task == 1], task[task == 1], epochs=2)
    assert m.make_optimizers()["model"].param_groups[0]["lr"] == 1e-4  # App. B.2
    now = m.state_dict()
    assert past and all(torch.equal(v, now[k]) for k, v in past.items())
    assert not torch.equal(shared, m.shared_head.net[0].weight)  # the shared parts learn on
    assert not m.uses_mi()  # one population per phase: eq. 3
    assert m.seen.tolist() == [True, True]


def test_translate_shifts_training_batches_only():
    """App. B.1's augmentation: each training image moves by whole pixels, at most
    round(0.1 * 28) = 3 each way, uncovered pixels 0; evaluation (eval mode or no grad) and
    translate = 0 see the images as they are."""
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    torch.manual_seed(0)
    moved = translate(x, 0.1)
    where = moved[:, 0].flatten(1).argmax(1)
    dy, dx = where // 28 - 14, where % 28 - 14
    assert moved.sum() == 64 and dy.abs().max() == 3 and dx.abs().max() == 3
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 20  # per-image shifts
    edge = torch.ones(2, 1, 28, 28)
    assert translate(edge, 0.1).sum() < edge.sum()  # uncovered rows/columns are 0
    xs, task = _pops(("hbar", "vbar"), 16)
    plain, shifted = _model(), _model(translate=0.1)  # the same weights

    def rec(model, x, grad=True, shift=False):
        torch.manual_seed(1)
        x = translate(x, 0.1) if shift else x  # the draws loss() makes first when shifting
        with torch.set_grad_enabled(grad):
            return model.loss({"x": x, "task": task}, 1)["rec"]

    assert torch.equal(rec(shifted, xs), rec(plain, xs, shift=True))  # training: shifted
    assert torch.equal(rec(shifted, xs, grad=False), rec(plain, xs, grad=False))
    assert torch.equal(rec(shifted.eval(), xs), rec(plain.eval(), xs))


def test_config_validation():
    bad_configs = ({"objective": "info"}, {"private_dim": 0}, {"alpha_rate": 0.9})
    for bad in (*bad_configs, {"alpha_epoch_images": -1}, {"translate": 0.5}):
        with pytest.raises(ValueError):
            CPVAEConfig(**bad).validate()


def test_cli_train_eval_and_explore(tmp_path, capsys):
    from lifelong.__main__ import main
    from lifelong.explore import interpolate, latentmap, sharedprivate, traversal
    from lifelong.runs import open_run
    from lifelong.train.trainer import read_log

    out = tmp_path / "cpvae"
    argv = ["train", "--model", "cpvae", "--tasks", "digits:classes=0-4,digits:classes=5-9"]
    argv += ["--epochs", "2", "--out", str(out), "--device", "cpu"]
    for k, v in TINY.items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    assert main(["eval", str(out)]) == 0
    capsys.readouterr()
    # Tables 1-2 from the command line, stored in the manifest, equal to the Shared / private
    # page's own computation with the same inputs, importance samples and seed.
    argv = ["eval", str(out), "--metrics", "populations", "--k", "4", "--samples", "24"]
    assert main([*argv, "--write", "--seed", "3"]) == 0
    assert "eqs. 7-8 accuracy" in capsys.readouterr().out
    stored = open_run(out).manifest["eval"]["metrics"]["populations"]["value"]
    tests = [load_task(t, "test") for t in open_run(out).tasks]
    want = sharedprivate.scores(open_run(out).load_model(), tests, 24, 3, samples=4)
    assert stored["accuracy"] == pytest.approx(want["accuracy"]) and stored["n"] == 48
    assert np.allclose(stored["ari"]["values"], want["ari"], equal_nan=True)
    run = open_run(out)
    assert [s["after_task"] for s in run.manifest["snapshots"]] == [1]  # one joint phase
    epochs = [r for r in read_log(out / "log.jsonl") if r.get("kind") == "epoch"]
    assert [r["alpha"] for r in epochs] == pytest.approx([1.0, 1.1])
    m = run.load_model()
    x = load_task("digits:classes=5-9", "test").x[:2]
    s = traversal.start_from_image(m, x[:1])
    grid, labels = traversal.sweep(m, s, [-3, 0, 3])
    assert torch.isfinite(grid).all() and labels[0] == "z[0]" and len(labels) == 12
    assert set(traversal.start_from_prior(m, None).codes) == {"z", "t0", "t1"}
    assert set(traversal.start_from_image(m, x[:1], expert=1).codes) == {"z", "t1"}
    assert interpolate.strip(m, x[:1], x[1:], 4).shape == (4, 1, 28, 28)
    assert "block t1" in latentmap.spaces(m)
    parts = m.reconstruct_parts(x)
    assert set(parts) == {"full", "shared", "private", "population"}
    assert m.decode_cross(x, 1, 0).shape == x.shape and m.sample(3, task=0).shape == (3, 1, 28, 28)


# -- the paper's claims on small seeded settings (slow) ---------------------------------------


@pytest.mark.slow
def test_claim_table1_ari_private_above_vae_above_shared():
    """Table 1 on the Grassy-MNIST analogue (digits 0-4 | 5-9 over grass): k-means ARI of the
    digit classes within each population is highest in the private codes, lower in a plain
    VAE's codes (same networks, latent size = shared + private) and near 0 in the shared ones.

    Table 1's CPVAE row is alpha = 1, not annealed (the annealing is App. B.1's, for the
    classification of Table 2). Both models train 40 epochs (960 steps), seeds 0-2 (private /
    VAE / shared, one CPU thread):
      alpha = 1:             .73 / .57 / .06, .64 / .57 / .09, .71 / .17 / .01 (this test);
      annealed (App. B.1):   .69 / .57 / .09, .60 / .57 / .10, .64 / .17 / .00;
      alpha = 1, level=strong (the texture as bright as the digits, like real grass):
                             .55 / .37 / .00, .51 / .09 / .07, .54 / .14 / .01.
    With the default networks (32 channels, 128 hidden, shared 30 / private 5) over the faint
    texture the plain VAE clusters the digits about as well as the private codes (seeds 0-1,
    80 epochs: .67 / .70, .73 / .63): the faint texture carries little a Bernoulli decoder
    can use, so the VAE's latent is hardly spent on the background, which is where Table 1's
    gap comes from; over the strong texture the gap is back (40 epochs: .68 / .45, .58 /
    .50). docs/claims.md has the full-size figures."""
    specs = ["textured:classes=0-4", "textured:classes=5-9"]
    ari = {"private": [], "vae": [], "shared": []}
    for seed in range(3):
        train = [load_task(s, "train", seed) for s in specs]
        test = [load_task(s, "test", seed) for s in specs]
        torch.manual_seed(seed)
        cfg = CPVAEConfig(n_tasks=2, alpha_anneal=False, **TINY)
        cp = _fit(build("cpvae", cfg), train, 40)
        torch.manual_seed(seed)
        vae = build("vae", VAEConfig(n_tasks=2, latent_dim=8, hidden=32, channels=8, joint=True))
        vae = _fit(vae, train, 40)
        per = {k: [] for k in ari}
        with torch.no_grad():
            for k, d in enumerate(test):
                post, y = cp.encode(d.x), d.y.numpy()
                per["private"].append(metrics.kmeans_ari(post[f"t{k}"]["mu"].numpy(), y))
                per["shared"].append(metrics.kmeans_ari(post["z"]["mu"].numpy(), y))
                per["vae"].append(metrics.kmeans_ari(vae.encode(d.x)["z"]["mu"].numpy(), y))
        for k, v in per.items():
            ari[k].append(float(np.mean(v)))
    # The ordering in every seed, and by a clear margin on average.
    rows = zip(ari["private"], ari["vae"], ari["shared"], strict=True)
    assert all(p > v > s for p, v, s in rows), ari
    mean = {k: float(np.mean(v)) for k, v in ari.items()}
    assert mean["private"] > mean["vae"] + 0.1 and mean["vae"] > mean["shared"] + 0.1, mean


@pytest.mark.slow
def test_claim_table2_marginal_likelihood_classifies_digit_populations():
    """Table 2 (MNIST row): one population per digit class, classified by eqs. 7-8 on the
    test split. Measured: 93.6 % after 20 epochs (NO MI: 91.9 %), 96.6 % after 30."""
    train = [load_task(f"digits:classes={c}", "train") for c in range(10)]
    test = [load_task(f"digits:classes={c}", "test") for c in range(10)]
    torch.manual_seed(0)
    m = _fit(build("cpvae", CPVAEConfig(n_tasks=10, **{**TINY, "latent_dim": 2})), train, 25)
    torch.manual_seed(1)
    with torch.no_grad():
        hits = [(m.classify(d.x) == k).float().sum().item() for k, d in enumerate(test)]
    acc = sum(hits) / sum(len(d) for d in test)
    assert acc >= 0.90, acc


@pytest.mark.slow
def test_claim_table2_on_the_shipped_textured_run():
    """Eqs. 7-8 on pretrained/cpvae-textured10 (one population per textured digit class, App.
    B.1's sizes and shifts): a 10-way choice, measured 93.9 % with 16 importance samples and
    92.2 % with 128 (chance 10 %). With App. B.2's 10 / 10 and no shifts a two-population run
    fell to 44 % / 31 % as S grew: accuracy must not fall much as S grows."""
    from pathlib import Path

    from lifelong.runs import open_run

    path = Path(__file__).resolve().parents[2] / "pretrained" / "cpvae-textured10"
    if not path.exists():
        pytest.skip("no shipped cpvae-textured10 run")
    run = open_run(path)
    m = run.load_model().float().eval()
    test = [load_task(s, "test") for s in run.manifest["tasks"]]
    x = torch.cat([d.x for d in test])
    p = torch.cat([torch.full((len(d),), k) for k, d in enumerate(test)])
    acc = {}
    for s in (16, 128):
        torch.manual_seed(0)
        acc[s] = (m.population_log_likelihoods(x, s).argmax(1) == p).float().mean().item()
    print(acc)
    assert acc[16] >= 0.85 and acc[128] >= 0.85 and acc[128] >= acc[16] - 0.02, acc
