"""LGM (paper 001): replay proportion, consistency, zero-padded growth, frozen teacher, recorded
replay, snapshots, and the claim that z_d fixed to a task's code regenerates that task."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong import losses
from lifelong.explore import forgetting, generation
from lifelong.models import build
from lifelong.models.lgm import LGM, LGMConfig, consistency_kl, grow
from lifelong.runs import open_run
from lifelong.zoo import ZOO
from tests.conftest import synthetic_task
from tests.models.test_vae import TINY, _train, cli_run


def _model(n_tasks=3, **kw) -> LGM:
    torch.manual_seed(0)
    return build("lgm", LGMConfig(n_tasks=n_tasks, lr=3e-3, replay_grid=4, **TINY, **kw))


def _state(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_real_share_is_one_over_k_plus_one(tasks):
    """Sec. 4: after k earlier tasks the batch is real with probability pi = 1/(k+1), the rest
    is the teacher's replay; the before_task event reports the same pi."""
    model = _model()
    x = tasks[0].x[:12]
    for t, data in enumerate(tasks):
        events = model.before_task(t, data)
        pi = next(e for e in events if e["type"] == "replay")["pi"]
        assert pi == pytest.approx(1 / (t + 1)) == model.real_fraction(t)
        assert float(model.loss({"x": x}, t)["pi"]) == pytest.approx(1 / (t + 1))
    assert [e["type"] for e in events] == [
        "teacher_swapped",
        "dimension_grown",
        "replay",
        "replay_recorded",
    ]


def test_consistency_is_zero_for_an_identical_student_and_positive_otherwise(tasks):
    """Eq. 10's regulariser on replayed data: 0 right after the swap (student == teacher, no
    growth), > 0 once the student has moved; the loss carries it only on replayed rows."""
    model = _model(grow_discrete=False, discrete_dim=3)
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=15)
    model.before_task(1, tasks[1])
    x_hat = model.replay(32)
    with torch.no_grad():
        t_logits, _, _ = model.teacher.posterior(x_hat)
        s_logits, _, _ = model.student.posterior(x_hat)
        assert torch.allclose(consistency_kl(t_logits, s_logits), torch.zeros(32), atol=1e-6)
        assert float(model.loss({"x": tasks[1].x[:16]}, 1)["consistency"]) < 1e-6
    _train(model, 1, tasks[1], steps=15)
    with torch.no_grad():
        s_logits, _, _ = model.student.posterior(x_hat)
        assert float(consistency_kl(t_logits, s_logits).mean()) > 1e-3
        assert float(model.loss({"x": tasks[1].x[:16]}, 1)["consistency"]) > 1e-4
    # The ablation switch (Fig. 12a) removes it.
    model.config.consistency = False
    assert float(model.loss({"x": tasks[1].x[:16]}, 1)["consistency"]) == 0.0


def test_consistency_is_student_first_with_the_new_category_padded_by_log_one():
    """Eq. 10's printed direction, KL[student || teacher], over a teacher with J categories and
    a student grown to J+1 (App. 9.8), the authors' reading: the teacher's log-probabilities
    are padded with 0, so the new category adds q_new log q_new (in [-1/e, 0]) and replayed
    mass on it is not forbidden."""
    t, s = torch.randn(5, 2), torch.randn(5, 3)
    log_p, log_q = torch.log_softmax(t, 1), torch.log_softmax(s, 1)
    q = log_q.exp()
    by_hand = (q[:, :2] * (log_q[:, :2] - log_p)).sum(1) + q[:, 2] * log_q[:, 2]
    assert torch.allclose(consistency_kl(t, s), by_hand, atol=1e-6)
    # Student first: not the teacher-first zero-padded KL (whose penalty is -log(1 - q_new)).
    assert not torch.allclose(consistency_kl(t, s), losses.categorical_kl(t, s), atol=1e-3)
    # Same size: the ordinary KL[student || teacher], 0 iff equal.
    t3 = torch.randn(5, 3)
    assert torch.allclose(consistency_kl(t3, s), losses.categorical_kl(s, t3), atol=1e-6)
    assert torch.allclose(consistency_kl(s, s), torch.zeros(5), atol=1e-6)
    # A student that copies the teacher and never uses the new category costs 0; moving mass
    # onto it costs at most the old categories' share, and the new term bottoms out at q = 1/e.
    same = torch.cat([t, torch.full((5, 1), -1e4)], dim=1)
    assert torch.allclose(consistency_kl(t, same), torch.zeros(5), atol=1e-6)
    q_new = torch.linspace(0.01, 0.99, 99)
    only_new = q_new * q_new.log()  # student = (1 - q_new) * teacher on the old categories
    scaled = torch.log(torch.softmax(t[:1], 1) * (1 - q_new[:, None]))
    student = torch.cat([scaled, q_new.log()[:, None]], dim=1)
    cost = consistency_kl(t[:1].expand(99, 2), student)
    expected = (1 - q_new) * torch.log1p(-q_new) + only_new
    assert torch.allclose(cost, expected, atol=1e-5)
    assert (cost <= 1e-6).all() and cost.min() >= -0.6932  # -H(q_new), at least -log 2
    # A one-category teacher (task 1): the term is minus the student's entropy, whatever the
    # student puts on which code, so it does not anchor the replay to the teacher's code.
    one = torch.randn(5, 1)
    assert torch.allclose(consistency_kl(one, s), (q * log_q).sum(1), atol=1e-6)


def test_growth_keeps_the_teachers_outputs_for_every_old_code(tasks):
    """The grown student decodes each old code exactly like the teacher and keeps its first J
    logits and its z_c posterior; "reinit" (the default, App. 9.8) re-draws only the two layers
    around z_d."""
    model = _model(grow_init="transfer")
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=10)
    model.before_task(1, tasks[1])
    teacher, student = model.teacher, model.student
    assert (teacher.discrete_dim, student.discrete_dim) == (1, 2)
    assert model.arch() == {"discrete_dim": 2, "teacher_dim": 1}
    x, zc = tasks[0].x[:8], torch.randn(8, 4)
    with torch.no_grad():
        old = teacher.decode_logits(torch.ones(8, 1), zc)
        new = student.decode_logits(torch.tensor([[1.0, 0.0]]).repeat(8, 1), zc)
        assert torch.equal(old, new)
        (t_logits, t_mu, t_lv), (s_logits, s_mu, s_lv) = teacher.posterior(x), student.posterior(x)
        assert torch.equal(t_logits, s_logits[:, :1]) and torch.equal(t_mu, s_mu)
        assert torch.equal(t_lv, s_lv)
    re = grow(teacher, model.config, 2, init="reinit")
    for name, value in re.state_dict().items():
        if name.startswith(("disc_head.2", "dec_head.net.0")):
            assert value.shape != teacher.state_dict()[name].shape or not torch.equal(
                value, teacher.state_dict()[name]
            )
        else:
            assert torch.equal(value, teacher.state_dict()[name]), name


def test_teacher_stays_frozen_during_a_task(tasks):
    model = _model()
    model.before_task(0, tasks[0])
    _train(model, 0, tasks[0], steps=5)
    model.before_task(1, tasks[1])
    before = _state(model.teacher)
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.trainable_parameters()}
    _train(model, 1, tasks[1], steps=10)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not model.teacher.training  # train() on the model leaves the teacher in eval mode


def test_replay_is_recorded_per_task_and_survives_a_rebuild(tasks):
    """A fixed grid of the teacher's replay is kept per task (uint8 buffer), and a model rebuilt
    from config + arch + state dict has the same teacher, student and grids."""
    model = _model()
    for t, data in enumerate(tasks):
        model.before_task(t, data)
        _train(model, t, data, steps=4)
        model.after_task(t, data)
        if t:
            g = torch.Generator().manual_seed(4000 + t)  # the seed before_task uses
            with torch.no_grad():
                expected = model.replay(4, g)  # the same teacher is still in place
            assert (model.replayed_samples()[t] - expected).abs().max() <= 0.5 / 255 + 1e-6
    grids = model.replayed_samples()
    assert sorted(grids) == [1, 2] and not torch.equal(grids[1], grids[2])
    rebuilt = LGM(model.config, model.arch())
    rebuilt.load_state_dict(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k
    assert rebuilt.arch() == {"discrete_dim": 3, "teacher_dim": 2}
    assert torch.equal(forgetting.replayed(rebuilt)[2], grids[2])


def test_training_objective_is_the_score_at_one_category(monkeypatch, tasks):
    """With J = 1 and z_c at its mean, eq. 10 on task 0 without the info term is -ELBO, and
    score() is that ELBO per sample (its sum over categories is exact)."""
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    model = _model(info_restrict=False)
    model.before_task(0, tasks[0])
    x = tasks[0].x[:16]
    assert float(model.loss({"x": x}, 0)["total"]) == pytest.approx(-float(model.score(x).mean()))


def test_temperature_and_the_info_term():
    model = _model()
    model.progress = 0.0
    assert model.temperature() == pytest.approx(1.0)
    model.progress = 0.5
    assert model.temperature() == pytest.approx(0.5**0.5)
    model.progress = 0.999
    assert model.temperature() == pytest.approx(0.5, rel=1e-2)
    # L_I (eq. 9) is minus the entropy of Q(z_c | x_hat): log-variances -> closed form.
    lv = torch.tensor([[0.0, -2.0]])
    assert float(-losses.gaussian_entropy(lv)) == pytest.approx(-(2 * 0.5 * 2.8378771 - 1))
    model.config.info_restrict = False
    assert float(model.loss({"x": synthetic_task("hbar", 8).x}, 0)["info"]) == 0.0


def test_task_anchor_targets_the_task_and_each_replayed_images_own_code(tasks):
    """Beyond the paper (config): the anchor is the cross-entropy of Q(z_d|x) against category
    `task` on real rows and against the generating category on replayed rows (replay draws
    categories 0, 1, ..., J_t - 1 in turn); a few steps of it put the new task on its code."""
    model = _model(task_anchor=1.0)
    for t in range(2):
        model.before_task(t, tasks[t])
        _train(model, t, tasks[t], steps=20 if t == 0 else 40)
    x = tasks[1].x[:8]
    torch.manual_seed(3)
    got = model.loss({"x": x}, 1)
    torch.manual_seed(3)
    x_all = torch.cat([x, model.replay(8)])  # the same replay draw as inside loss()
    logits, _, _ = model.student.posterior(x_all)
    target = torch.tensor([1] * 8 + [0] * 8)
    expected = torch.nn.functional.cross_entropy(logits, target)
    assert float(got["anchor"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert model.after_task(1, tasks[1])[0]["code"] == 1
    assert "anchor" not in _model().loss({"x": x}, 0)  # the paper's objective: no such term


def test_zd_info_trains_the_decoder_to_keep_the_code_readable():
    """The authors' I(z_d; x_hat) bonus: -log Q(z_d = d | x_hat) of decodings at d, with
    gradients into the decoder's z_d inputs (not only the encoder); invalid weights refused."""
    model = _model(zd_info=3.0)
    model.before_task(0, None)
    model.before_task(1, synthetic_task("vbar", 8))
    out = model.loss({"x": synthetic_task("vbar", 8).x}, 1)
    assert float(out["zd_info"]) > 0
    out["zd_info"].backward()
    w = model.student.dec_head.net[0].weight.grad  # [hidden, d + J]: the z_d columns last
    assert float(w[:, -2:].abs().sum()) > 0
    with pytest.raises(ValueError, match="zd_info"):
        LGMConfig(zd_info=-1.0).validate()
    with pytest.raises(ValueError, match="grow_discrete"):
        LGMConfig(n_tasks=3, task_anchor=1.0, grow_discrete=False).validate()


def test_detach_q_keeps_the_information_bounds_off_q():
    """detach_q: L_I (eq. 9) and the z_d bonus reach the decoder unchanged but none of Q's
    parameters (encoder body, z_c head, z_d head); without it they reach all of them."""
    grads = {}
    for detach in (False, True):
        model = _model(n_tasks=1, discrete_dim=3, grow_discrete=False, zd_info=1.0)
        model.config.detach_q = detach
        torch.manual_seed(1)
        codes = model._one_hot(torch.arange(6) % 3)
        rec_logits = model.student.decode_logits(codes, torch.randn(6, model.config.latent_dim))
        loss = model.info_term(rec_logits).mean() + model.zd_info_term(6, torch.device("cpu"))
        loss.backward()
        grads[detach] = {
            part: [p.grad for p in getattr(model.student, part).parameters()]
            for part in ("enc_body", "enc_head", "disc_head", "dec_head", "dec_body")
        }
    for part in ("enc_body", "enc_head", "disc_head"):
        assert all(g is not None and float(g.abs().sum()) > 0 for g in grads[False][part]), part
        assert all(g is None for g in grads[True][part]), part
    for part in ("dec_head", "dec_body"):
        for g0, g1 in zip(grads[False][part], grads[True][part], strict=True):
            torch.testing.assert_close(g0, g1)


def test_sample_uses_the_code_each_task_was_encoded_to(tasks):
    model = _model()
    for t in range(2):
        model.before_task(t, tasks[t])
        _train(model, t, tasks[t], steps=10)
        event = model.after_task(t, tasks[t])[0]
        assert event["type"] == "task_code" and 0 <= event["code"] < model.discrete_dim
    for t in range(2):
        code = int(model.task_code[t])
        torch.manual_seed(5)
        got = model.sample(6, task=t)
        torch.manual_seed(5)
        zc = torch.randn(6, 4)
        one = torch.nn.functional.one_hot(torch.full((6,), code), 2).float()
        assert torch.equal(got, model.decode({"zd": one, "zc": zc}))


def test_cli_run_snapshots_the_grown_model_and_its_views(tmp_path):
    out = cli_run(tmp_path, "lgm")
    run = open_run(out)
    assert [s["arch"] for s in run.manifest["snapshots"]] == [
        {"discrete_dim": 1, "teacher_dim": 0},
        {"discrete_dim": 2, "teacher_dim": 1},
    ]
    types = {e["type"] for e in json.loads((out / "manifest.json").read_text())["events"]}
    assert {"teacher_swapped", "dimension_grown", "replay", "replay_recorded"} <= types
    m = run.load_model()
    assert sorted(forgetting.replayed(m)) == [1]
    assert not any(p.requires_grad for p in m.teacher.parameters())
    imgs, labels = generation.grid(m, "zd", ("zc", 0), [-2.0, 0.0, 2.0])
    assert labels == ["zd=0", "zd=1"] and imgs.shape == (6, 1, 28, 28)
    first = run.load_model(0)
    assert first.teacher is None and first.discrete_dim == 1


PAPER_ONLY = pytest.mark.xfail(
    strict=True,
    reason="paper 001's eq. 10 alone leaves the tasks mixed on the z_d codes (docs/claims.md, "
    "'Fixing z_d'); strict: this fails loudly if it ever starts to hold",
)


# The shipped LGM run's settings beyond the network sizes (the zoo's entry, so they stay in step).
SHIPPED = {
    k: v
    for k, v in next(e for e in ZOO if e["name"] == "lgm-digits-glyphs-shapes")["set"].items()
    if k != "latent_dim"
}
SMALL = dict(hidden=64, channels=16)  # the fixed-z_d claim's networks (TINY's are too small)


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, seeds",
    [
        pytest.param({}, [0], marks=PAPER_ONLY, id="paper"),
        pytest.param(SHIPPED, [0, 1, 2], id="shipped"),
        pytest.param({**SHIPPED, "data": "fashion"}, [0, 1], id="shipped-fashion"),
    ],
)
def test_fixed_zd_generates_one_earlier_task(variant, seeds):
    """Figs. 5b/12b on digits 0-3 | 4-6 | 7-9 (400 steps a task, small networks: SMALL's hidden
    64 and 16 channels): after the last task each task has its own z_d code, and z_d fixed to
    that code generates that task: a pixel probe (logistic regression on real images, as in
    the other claim tests) calls >= 75 % of the samples at every code that task, >= 85 % on
    average over codes and seeds. With the paper's objective it does not hold (seed 0: codes
    [0, 0, 2], shares 1.0 / 0.0 / 0.0). With the shipped run's settings (task anchor, the
    authors' z_d bonus, lambda = 1, Q fixed in the bounds) it does: measured 0.82 / 0.99 / 1.0,
    0.89 / 0.90 / 0.97, 1.0 / 0.97 / 0.99 at seeds 0-2 (seed 3: 0.91 / 0.97 / 0.94). With the
    tiny networks of the other tests one seed of six fell to 0.62 at one code."""
    from sklearn.linear_model import LogisticRegression

    from lifelong import data as ldata
    from tests.conftest import fashion_or_skip

    variant = dict(variant)
    specs = [f"{variant.pop('data', 'digits')}:classes={c}" for c in ("0-3", "4-6", "7-9")]
    # the real-data case (Fashion-MNIST: tops | dress, coat, sandal | shirt, sneaker, bag,
    # boot): 2,000 training images a task, so 400 steps see each about 13 times as on digits
    train = [ldata.load_task(s, "train", 0) for s in specs]
    if specs[0].startswith("fashion"):
        fashion_or_skip(specs)
        train = [ldata.TaskData(d.name, d.x[:2000], d.y[:2000], d.classes) for d in train]
    x = torch.cat([d.x for d in train]).flatten(1).numpy()
    y = sum([[j] * len(d.x) for j, d in enumerate(train)], [])
    probe = LogisticRegression(max_iter=1000, C=0.1).fit(x, y)
    all_shares = []
    for seed in seeds:
        torch.manual_seed(seed)
        cfg = LGMConfig(n_tasks=3, lr=3e-3, replay_grid=0, **{**TINY, **SMALL}, **variant)
        model = build("lgm", cfg)
        for t in range(3):
            model.before_task(t, train[t])
            _train(model, t, train[t], steps=400)
            model.after_task(t, train[t])
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            shares = [
                float((probe.predict(model.sample(300, task=t).flatten(1).numpy()) == t).mean())
                for t in range(3)
            ]
        assert model.task_code.tolist() == [0, 1, 2] and min(shares) >= 0.75, (seed, shares)
        all_shares += shares
    assert sum(all_shares) / len(all_shares) >= 0.85, all_shares


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "fashion"])
def test_claim_fig12a_replay_beats_the_fine_tuned_vae(data):
    """Fig. 12a on digits 0-3 | 4-6 | 7-9 (400 steps a task, small networks): after the last
    task the Fréchet distance (feature classifier) of LGM's samples over every seen task is
    lower than the fine-tuned VAE's, at each of seeds 0-2, with the paper's objective and with
    the shipped run's settings (measured 9.68 / 8.53 / 9.52 and 6.84 / 6.54 / 8.58 against
    14.22 / 9.17 / 10.03).

    The other half of Fig. 12a does not hold here: the ablation without the two regularisers
    (`consistency=False, info_restrict=False`, replay kept) scored 7.47 / 7.39 / 8.33, better
    than LGM at every seed (docs/claims.md)."""
    from lifelong import data as ldata
    from lifelong import evaluation as ev
    from lifelong.classifier import classifier_path_for, load_classifier
    from lifelong.models.vae import VAEConfig
    from tests.conftest import fashion_or_skip

    specs = [f"{data}:classes={c}" for c in ("0-3", "4-6", "7-9")]
    if data == "fashion":  # the real-data case, scored with the Fashion-MNIST classifier
        fashion_or_skip(specs)
    train = [ldata.load_task(s, "train", 0) for s in specs]
    test = [ldata.load_task(s, "test", 0) for s in specs]
    classifier = load_classifier(classifier_path_for(specs))
    for seed in range(3):
        fd = {}
        for name in ("lgm", "shipped", "vae"):
            torch.manual_seed(seed)
            if name != "vae":
                extra = SHIPPED if name == "shipped" else {}
                model = build("lgm", LGMConfig(n_tasks=3, lr=3e-3, replay_grid=0, **TINY, **extra))
            else:
                model = build("vae", VAEConfig(n_tasks=3, lr=3e-3, **TINY))
            for t in range(3):
                model.before_task(t, train[t])
                _train(model, t, train[t], steps=400)
                model.after_task(t, train[t])
            model.eval()
            fd[name], _ = ev.frechet_seen_and_per_task(model, test, classifier, 3, 500, seed)
        assert fd["lgm"] < fd["vae"] and fd["shipped"] < fd["vae"], (seed, fd)


# -- EWC on LGM's graphical model (paper 001 Sec. 5's baseline; regulariser="ewc") ----------

EWC_LGM = {"regulariser": "ewc", "grow_discrete": False, "discrete_dim": 3}


def test_ewc_regulariser_keeps_one_student_and_a_fixed_zd(tasks):
    model = _model(**EWC_LGM)
    for t, data in enumerate(tasks):
        events = model.before_task(t, data)
        assert [e["type"] for e in events] == ["replay"] and events[0]["pi"] == 1.0
        assert model.teacher is None and model.discrete_dim == 3
        out = model.loss({"x": data.x[:16]}, t)
        assert float(out["pi"]) == 1.0 and float(out["consistency"]) == 0.0
        assert float(out["ewc"]) == 0.0  # at the anchor (or before any task is consolidated)
        _train(model, t, data, 5)
        moved = float(model.loss({"x": data.x[:16]}, t)["ewc"])
        assert (moved > 0) == (t > 0)  # once the parameters leave a consolidated anchor
        done = model.after_task(t, data)
        assert [e["type"] for e in done] == ["task_code", "ewc_consolidated"]
    assert int(model.consolidated) == 3
    assert torch.equal(
        model.anchor, torch.nn.utils.parameters_to_vector(model.student.parameters())
    )
    with pytest.raises(ValueError, match="regulariser=ewc keeps z_d fixed"):
        LGMConfig(regulariser="ewc").validate()  # growth on by default
    with pytest.raises(ValueError, match="regulariser must be"):
        LGMConfig(regulariser="both").validate()


def test_ewc_fisher_is_the_mean_squared_gradient_of_the_exact_zd_elbo(monkeypatch, tasks):
    """With z_c fixed at its mean, F is the mean over images of (d ELBO_n / d theta)^2, the ELBO
    exact over z_d (`lgm.elbo`, what `score` returns), over the student's parameters in order."""
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    model = _model(**EWC_LGM)
    x = tasks[0].x[:5]
    fisher = model.fisher_diagonal(x)
    expected = torch.zeros_like(fisher)
    for xi in x:
        model.zero_grad()
        model.score(xi[None]).sum().backward()
        expected += torch.cat([p.grad.flatten() for p in model.student.parameters()]).pow(2)
    assert torch.allclose(fisher, expected / len(x), rtol=1e-4, atol=1e-8)


def test_ewc_penalty_holds_the_student_near_the_anchor(tasks):
    """After task 0, training task 1 with a large gamma moves the parameters F weighs most
    far less than with gamma = 0; the penalty's gradient is gamma F (xi - Xi)."""
    moved = {}
    for gamma in (0.0, 1e4):
        model = _model(**EWC_LGM, ewc_lambda=gamma)
        model.before_task(0, tasks[0])
        _train(model, 0, tasks[0], 30)
        model.after_task(0, tasks[0])
        theta = model.anchor.clone()
        model.before_task(1, tasks[1])
        _train(model, 1, tasks[1], 30)
        top = model.fisher.argsort()[-200:]
        now = torch.nn.utils.parameters_to_vector(model.student.parameters()).detach()
        moved[gamma] = float((now - theta)[top].abs().mean())
    assert moved[1e4] < 0.3 * moved[0.0], moved
    model.zero_grad()
    model.ewc_penalty(1e4).backward()
    grads = torch.cat([p.grad.flatten() for p in model.student.parameters()])
    now = torch.nn.utils.parameters_to_vector(model.student.parameters()).detach()
    assert torch.allclose(grads, 1e4 * model.fisher * (now - model.anchor), rtol=1e-4, atol=1e-6)


def test_ewc_lgm_run_snapshots_rebuild_the_penalty(tmp_path):
    out = cli_run(tmp_path, "lgm", *[a for k, v in EWC_LGM.items() for a in ("--set", f"{k}={v}")])
    run = open_run(out)
    types = [e["type"] for e in run.manifest["events"]]
    assert types.count("ewc_consolidated") == 2 and "teacher_swapped" not in types
    last, first = run.load_model(), run.load_model(0)
    assert int(last.consolidated) == 2 and int(first.consolidated) == 1
    assert not torch.equal(first.fisher, last.fisher) and last.teacher is None
