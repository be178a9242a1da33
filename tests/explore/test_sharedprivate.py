"""The Shared / private view's data on a tiny CPVAE: Fig. 2's parts, Fig. 4's decoding through
every population, swapped shared codes, Table 1's ARI and eqs. 7-8's accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong import metrics
from lifelong.explore import sharedprivate as sp
from lifelong.models import build
from lifelong.models.cpvae import CPVAEConfig
from lifelong.models.lmvae import LMVAEConfig
from tests.conftest import Task, synthetic_task

TINY = dict(latent_dim=3, private_dim=2, hidden=16, channels=4)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build("cpvae", CPVAEConfig(n_tasks=2, **TINY))
    # a few steps of eq. 6 so the codes are not those of random weights
    x = torch.cat([synthetic_task(k, 64, seed=i).x for i, k in enumerate(["hbar", "vbar"])])
    task = torch.arange(2).repeat_interleave(64)
    data = type("D", (), {"x": x, "task": task})()
    m.before_task(1, data)
    opt = m.make_optimizers()
    for _ in range(4):
        idx = torch.randperm(128)[:32]
        m.train_step({"x": x[idx], "task": task[idx]}, 1, opt)
    m.after_task(1, data)
    return m.eval()


@pytest.fixture
def tests():
    out = []
    for i, kind in enumerate(["hbar", "vbar"]):
        t = synthetic_task(kind, 60, seed=10 + i)
        out.append(Task(t.x, torch.arange(60) % 3 + 3 * i, kind))  # 3 classes per population
    return out


def _means(model, x, k):
    post = model.encode(x)
    return post["z"]["mu"], post[f"t{k}"]["mu"]


def test_inputs_are_reproducible(tests):
    x, y = sp.pick(tests, 1, 8, seed=3)
    x2, y2 = sp.pick(tests, 1, 8, seed=3)
    assert x.shape == (8, 1, 28, 28) and torch.equal(x, x2) and torch.equal(y, y2)
    assert set(y.tolist()) <= {3, 4, 5}
    assert not torch.equal(sp.pick(tests, 1, 8, seed=4)[0], x)


def test_applies_only_to_cpvae(model):
    assert sp.applies(model) and sp.learnt(model) == [0, 1]
    assert not sp.applies(build("lmvae", LMVAEConfig(n_tasks=2, latent_dim=2, hidden=8)))


@torch.no_grad()
def test_fig2_parts_follow_the_additive_decoder(model, tests):
    v = sp.view(model, tests, 0, 1, n=6, seed=1)
    assert v["population"] == [0] * 6 and v["population_b"] == [1] * 6
    x, _ = sp.pick(tests, 0, 6, seed=1)
    original, full, shared, private = v["fig2"]["rows"]
    assert torch.equal(original, x)
    z, t = _means(model, x, 0)
    fs, fk = model.shared_logits(z), model.private_logits(t, 0)
    assert torch.allclose(full, torch.sigmoid(fs + fk), atol=1e-6)
    assert torch.allclose(shared, torch.sigmoid(fs), atol=1e-6)
    assert torch.allclose(private, torch.sigmoid(fk), atol=1e-6)
    # the grid: 4 rows of 6 tiles, each 28 px upscaled, 2 px padding
    side = 28 * sp.SCALE + 2
    assert v["fig2"]["grid"].shape == (4 * side + 2, 6 * side + 2, 3)
    # shared-only ignores t: changing every private head and decoder leaves it as it was
    for p in [*model.private_heads.parameters(), *model.private_decoders.parameters()]:
        p.add_(0.5)
    again = sp.view(model, tests, 0, 1, n=6, seed=1)["fig2"]["rows"]
    assert torch.allclose(again[2], shared, atol=1e-6)
    assert not torch.allclose(again[1], full, atol=1e-4)


@torch.no_grad()
def test_fig4_decodes_through_each_population(model, tests):
    x, _ = sp.pick(tests, 0, 5, seed=0)
    pop = torch.zeros(5, dtype=torch.long)
    f4 = sp.through_populations(model, x, pop)
    assert f4["targets"] == [0, 1] and len(f4["rows"]) == 4
    z, t = _means(model, x, 0)  # the input's own private code, population 0's head
    for j in (0, 1):
        want = torch.sigmoid(model.shared_logits(z) + model.private_logits(t, j))
        assert torch.allclose(f4["rows"][1 + j], want, atol=1e-6)
    full = sp.reconstructions(model, x, pop)["rows"][1]
    assert torch.allclose(f4["rows"][1], full, atol=1e-6)  # own population: the reconstruction
    assert torch.allclose(f4["rows"][-1], torch.sigmoid(model.shared_logits(z)), atol=1e-6)
    # row j uses population j's decoder and no other
    for p in model.private_decoders[1].parameters():
        p.add_(0.5)
    after = sp.through_populations(model, x, pop)["rows"]
    assert torch.allclose(after[1], f4["rows"][1], atol=1e-6)
    assert not torch.allclose(after[2], f4["rows"][2], atol=1e-4)


@torch.no_grad()
def test_swap_puts_a_private_part_over_b_shared_code(model, tests):
    x_a, _ = sp.pick(tests, 0, 4, seed=0)
    x_b, _ = sp.pick(tests, 1, 4, seed=1)
    pa, pb = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    rows = sp.swap(model, x_a, x_b, pa, pb)["rows"]
    assert torch.equal(rows[0], x_a) and torch.equal(rows[1], x_b)
    z_a, t_a = _means(model, x_a, 0)
    z_b, t_b = _means(model, x_b, 1)
    a_on_b = torch.sigmoid(model.shared_logits(z_b) + model.private_logits(t_a, 0))
    b_on_a = torch.sigmoid(model.shared_logits(z_a) + model.private_logits(t_b, 1))
    assert torch.allclose(rows[2], a_on_b, atol=1e-6)
    assert torch.allclose(rows[3], b_on_a, atol=1e-6)
    # swapping with itself gives back the full reconstructions
    same = sp.swap(model, x_a, x_a, pa, pa)["rows"]
    full = sp.reconstructions(model, x_a, pa)["rows"][1]
    assert torch.allclose(same[2], full, atol=1e-6) and torch.allclose(same[3], full, atol=1e-6)


def test_classified_populations_are_eqs_7_8(model, tests):
    v = sp.view(model, tests, 1, 0, n=6, seed=2, classify=True)
    x, _ = sp.pick(tests, 1, 6, seed=2)
    torch.manual_seed(2)
    assert v["population"] == model.classify(x).tolist()
    parts = model.reconstruct_parts(x, torch.tensor(v["population"]))
    assert torch.allclose(v["fig2"]["rows"][1], parts["full"], atol=1e-6)


def test_ari_table_and_accuracy(model, tests):
    s = sp.scores(model, tests, n=40, seed=0)
    assert s["rows"] == sp.ARI_ROWS and s["columns"] == sp.ARI_COLUMNS
    assert len(s["ari"]) == 2 and all(len(r) == 3 for r in s["ari"])
    assert all(-1 <= v <= 1 for r in s["ari"] for v in r if not math.isnan(v))
    assert s["n"] == 80 and 0 <= s["accuracy"] <= 1 and set(s["per_population"]) == {0, 1}
    # the table reuses lifelong.metrics.kmeans_ari on the posterior means
    x = torch.cat([sp.pick(tests, k, 40, 0)[0] for k in (0, 1)])
    pops = torch.arange(2).repeat_interleave(40)
    codes = sp.codes(model, x, pops)
    assert codes["t_all"].shape == (80, 4) and codes["t_own"].shape == (80, 2)
    assert torch.equal(codes["t_own"][40:], codes["t_all"][40:, 2:])
    assert s["ari"][0][0] == pytest.approx(metrics.kmeans_ari(codes["z"], pops.numpy()))
    within = [metrics.kmeans_ari(codes["t_own"][:40], sp.pick(tests, 0, 40, 0)[1])]
    assert s["within"][0][1] == pytest.approx(within[0])
    csv = sp.ari_csv(s).splitlines()
    assert csv[0] == "code,population,class,class within population" and len(csv) == 3
    assert csv[1].startswith("shared z,") and csv[2].startswith("private t,")


# the stand-in's codes hold one point per population: fewer distinct points than classes
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
def test_plain_vae_row_clusters_the_same_inputs(tests):
    """Table 1's baseline row: the codes of a single-latent model on the very inputs `scores`
    picks. A stand-in whose codes are the spread of the row and of the column means tells
    horizontal bars from vertical ones (population ARI 1); a tiny VAE's row equals
    kmeans_ari on evaluation.codes of those inputs."""
    from lifelong import evaluation
    from lifelong.models.vae import VAEConfig

    class Pixels:
        device = torch.device("cpu")

        def encode(self, x):
            rows, cols = x.mean(dim=-1).flatten(1), x.mean(dim=-2).flatten(1)
            return {"z": {"mu": torch.stack([rows.std(1), cols.std(1)], dim=1)}}

    row = sp.baseline_ari(Pixels(), tests, [0, 1], n=40, seed=0)
    assert len(row) == 3 and row[0] == pytest.approx(1.0)
    torch.manual_seed(0)
    vae = build("vae", VAEConfig(n_tasks=2, latent_dim=3, hidden=16, channels=4)).eval()
    row = sp.baseline_ari(vae, tests, [0, 1], n=40, seed=0)
    x0, y0 = sp.pick(tests, 0, 40, 0)
    z0 = evaluation.codes(vae, x0)
    x1, y1 = sp.pick(tests, 1, 40, 0)
    z1 = evaluation.codes(vae, x1)
    within = (metrics.kmeans_ari(z0, y0.numpy()) + metrics.kmeans_ari(z1, y1.numpy())) / 2
    assert row[2] == pytest.approx(within)
