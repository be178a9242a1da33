"""Supervised and semi-supervised L-MVAE (paper 000 eqs. 18-23): the mechanisms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lifelong import data as ldata
from lifelong import losses
from lifelong.explore import generation
from lifelong.explore.summary import run_report
from lifelong.models import build
from lifelong.models.lmvae import LMVAE, LMVAEConfig
from lifelong.models.lmvae_supervised import SupervisedLMVAE, label_draw
from lifelong.runs import open_run
from lifelong.train.evaluate import evaluate
from tests.models.test_vae import TINY, _train, cli_run

DIGITS = ["digits:classes=0-4", "digits:classes=5-9"]


def _model(**kw):
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(**{"n_tasks": 2, "lr": 3e-3, **TINY, **kw}))


def test_supervision_builds_the_subclass_with_a_categorical_block():
    model = _model(supervision="semi", n_classes=7)
    assert type(model) is SupervisedLMVAE and model.family == "lmvae"
    assert type(_model()) is LMVAE
    blocks = {b.name: (b.kind, b.dim, b.owner) for b in model.latent_blocks()}
    assert blocks == {
        "z0": ("gaussian", 4, 0),
        "z1": ("gaussian", 4, 1),
        "d": ("categorical", 7, "shared"),
    }
    with pytest.raises(ValueError, match="supervision"):
        LMVAEConfig(supervision="weak").validate()
    with pytest.raises(ValueError, match="label_fraction"):
        LMVAEConfig(supervision="semi", label_fraction=0.0).validate()


def test_gumbel_softmax_eq20_and_the_discrete_kl():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(20000, 1)
    d = losses.gumbel_softmax(logits, temperature=0.1)
    assert torch.allclose(d.sum(1), torch.ones(20000))
    assert (d.max(1).values > 0.9).float().mean() > 0.9  # nearly one-hot at a low T
    freq = torch.bincount(d.argmax(1), minlength=3).float() / 20000
    assert torch.allclose(freq, torch.softmax(logits[0], 0), atol=0.015)  # argmax ~ Cat(d')
    assert torch.allclose(losses.categorical_kl_uniform(torch.zeros(2, 5)), torch.zeros(2))
    sure = losses.categorical_kl_uniform(torch.tensor([[50.0, 0, 0, 0]]))
    assert float(sure) == pytest.approx(math.log(4), rel=1e-4)


@pytest.mark.parametrize("reading", ["sample", "label"])
def test_supervised_loss_is_eq19_plus_the_eq21_cross_entropy(monkeypatch, reading):
    """One expert (K = 1, w = 1): total = -(rec - KL_z - KL_d) + CE, with the draws fixed; the
    decoder reads q(d|x)'s draw ("sample", eq. 20) or the image's label ("label", the default)."""
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    monkeypatch.setattr(losses, "gumbel_softmax", lambda lg, t: torch.softmax(lg, -1))
    model = _model(n_tasks=1, n_experts=1, supervision="supervised", supervised_decoder=reading)
    x = ldata.load_task("digits:classes=0-4", "train").x[:32]
    y = torch.arange(32) % 5
    out = model.loss({"x": x, "y": y}, 0)
    mu, logvar = model._posterior(0, x)
    logits_d = model.class_logits(0, x)
    d = torch.softmax(logits_d, -1) if reading == "sample" else F.one_hot(y, 10).float()
    rec = losses.bernoulli_log_likelihood(model._logits(0, mu, d), x)
    kl = losses.gaussian_kl(mu, logvar) + losses.categorical_kl_uniform(logits_d)
    ce = F.cross_entropy(logits_d, y)
    assert torch.allclose(out["total"], -(rec - kl).mean() + ce, rtol=1e-5)
    assert torch.allclose(out["ce"], ce, rtol=1e-5)
    if reading == "sample":  # the ELBO that routes and scores (eq. 18): the same quantity
        assert torch.allclose(model.score(x, expert=0), rec - kl, rtol=1e-5)
    with pytest.raises(ValueError, match="supervised_decoder"):
        LMVAEConfig(supervised_decoder="both").validate()


def test_semi_uses_only_the_labelled_fraction():
    model = _model(supervision="semi", label_fraction=0.25)
    data = ldata.load_task("digits:classes=0-4", "train")
    x, y = data.x[:128], data.y[:128]
    lab = model.labelled(x, y)
    assert torch.equal(lab, label_draw(x) < 0.25) and 10 < int(lab.sum()) < 60
    assert abs(float((label_draw(data.x) < 0.25).float().mean()) - 0.25) < 0.05
    assert not model.labelled(x, torch.full_like(y, -1)).any()  # -1: never a label

    def loss(labels):
        torch.manual_seed(1)  # same w, z and d draws for every call
        return model.loss({"x": x, "y": labels}, 0)

    base = loss(y)
    scrambled = y.clone()
    scrambled[~lab] = (y[~lab] + 1 + torch.arange(int((~lab).sum())) % 4) % 5
    other = loss(scrambled)
    for key in base:
        assert torch.equal(base[key], other[key]), key
    flipped = y.clone()
    flipped[lab] = (y[lab] + 1) % 5
    assert not torch.equal(base["total"], loss(flipped)["total"])  # labelled ones do count


def test_semi_objective_is_eq23(monkeypatch):
    """K = 1: unlabelled mean of eq. 22 + beta * labelled mean of eq. 19 (label decoded)."""
    monkeypatch.setattr(losses, "reparameterise", lambda mu, logvar: mu)
    monkeypatch.setattr(losses, "gumbel_softmax", lambda lg, t: torch.softmax(lg, -1))
    model = _model(n_tasks=1, n_experts=1, supervision="semi", label_fraction=0.3, semi_beta=0.5)
    x = ldata.load_task("digits:classes=5-9", "train").x[:64]
    y = 5 + torch.arange(64) % 5
    lab = model.labelled(x, y)
    out = model.loss({"x": x, "y": y}, 0)
    mu, logvar = model._posterior(0, x)
    logits_d = model.class_logits(0, x)
    d = torch.where(lab[:, None], F.one_hot(y, 10).float(), torch.softmax(logits_d, -1))
    rec = losses.bernoulli_log_likelihood(model._logits(0, mu, d), x)
    kl_z, kl_d = losses.gaussian_kl(mu, logvar), losses.categorical_kl_uniform(logits_d)
    eq22 = (rec - kl_z)[~lab].mean()
    eq19 = (rec - kl_z - kl_d)[lab].mean()
    ce = F.cross_entropy(logits_d[lab], y[lab])
    assert torch.allclose(out["total"], -(eq22 + 0.5 * eq19) + ce, rtol=1e-5)


def test_class_encoder_learns_the_digits_through_the_lifelong_sequence():
    """After digits 0-4 then 5-9, eq. 7 routing + the chosen expert's q(d|x) classify the test
    digits of both tasks far above chance (10%)."""
    model = _model(supervision="supervised")
    train = [ldata.load_task(s, "train") for s in DIGITS]
    test = [ldata.load_task(s, "test") for s in DIGITS]
    for t, data in enumerate(train):
        model.before_task(t, data)
        _train(model, t, data, 150)
        model.after_task(t, data)
    model.eval()
    acc = [float((model.predict_labels(d.x) == d.y).float().mean()) for d in test]
    assert min(acc) > 0.3 and sum(acc) / 2 > 0.5, acc
    # the trainer's evaluation row carries the same figure (the Forgetting page's matrix)
    assert evaluate(model, test)["class_accuracy"] == pytest.approx(acc, abs=1e-6)
    assert "class_accuracy" not in evaluate(_model(), test)  # unsupervised: nothing to read


def test_cli_run_and_views(tmp_path):
    out = cli_run(tmp_path, "lmvae", "--set", "supervision=semi", "--set", "label_fraction=0.2")
    run = open_run(out)
    m = run.load_model()
    acc = run.metric("class_accuracy")  # one row per snapshot, one share per task seen
    assert len(acc) == len(run.snapshots) and all(0 <= a <= 1 for a in acc[-1])
    summary = run_report(run)["summary"]  # forgetting of the accuracy, as of mse and elbo
    assert summary["forgetting_class_accuracy"][0] == pytest.approx(acc[0][0] - acc[-1][0])
    assert type(m) is SupervisedLMVAE and m.config.label_fraction == 0.2
    x = ldata.load_task("digits:classes=0-4", "test").x[:8]
    post = m.encode(x)
    assert post["d"]["logits"].shape == (8, 10) and m.predict_labels(x).shape == (8,)
    imgs, labels = generation.grid(m, "d", ("z0", 0), [-2.0, 2.0])
    assert imgs.shape == (2 * 10, 1, 28, 28) and labels[3] == "d=3"
    assert m.sample(4, task=0).shape == (4, 1, 28, 28)
