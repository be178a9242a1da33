"""Metrics against known values: SSIM, PSNR, the Frechet distance, ARI, MIG/DCI on synthetic
codes whose answer is known, the IWAE bound against a log-likelihood computed by quadrature,
and the forgetting-matrix summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lifelong import disentangle, metrics
from lifelong.likelihood import Unsupported, iwelbo
from lifelong.models.base import Capabilities, GenerativeModel, LatentBlock

# -- SSIM / PSNR ----------------------------------------------------------------------------


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """An independent SSIM: scipy's Gaussian filter (reflect, truncate 3.5 -> 11 taps at sigma
    1.5), then the 5-pixel border cropped, as scikit-image's structural_similarity does."""
    from scipy.ndimage import gaussian_filter

    def f(v):
        return gaussian_filter(v, 1.5, truncate=3.5)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


def test_ssim_known_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64).float()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(3), atol=1e-6)
    # constant images: sigma = 0, SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.2**2 + 0.6**2 + 1e-4)
    assert metrics.ssim(a, b).item() == pytest.approx(expected, rel=1e-5)
    # an image against its negation is anti-correlated: SSIM < 0
    assert (metrics.ssim(x, 1 - x) < 0).all()
    # against an independent implementation on noisy pairs (and per channel for RGB)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for i in range(3):
        ref = _ssim_reference(x[i, 0].double().numpy(), y[i, 0].double().numpy())
        assert metrics.ssim(x[i : i + 1], y[i : i + 1]).item() == pytest.approx(ref, abs=1e-5)
    rgb = metrics.ssim(x.view(1, 3, 28, 28), y.view(1, 3, 28, 28)).item()
    assert rgb == pytest.approx(metrics.ssim(x, y).mean().item(), abs=1e-6)
    # smaller than the window (8x8 digits) still works
    assert metrics.ssim(x[:, :, :8, :8], x[:, :, :8, :8]).allclose(torch.ones(3), atol=1e-6)


def test_psnr_and_mse_known_values():
    x, y = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.1)
    assert torch.allclose(metrics.mse(x, y), torch.full((2,), 0.01))
    assert torch.allclose(metrics.psnr(x, y), torch.full((2,), 20.0))
    assert metrics.transfer_score(x, y) == pytest.approx(0.01)


# -- Frechet distance -----------------------------------------------------------------------


def test_frechet_identical_shifted_and_gaussian_closed_form():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 8)) @ rng.normal(size=(8, 8))
    assert metrics.frechet_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    d = rng.normal(size=8)
    assert metrics.frechet_from_features(f, f + d) == pytest.approx(d @ d, rel=1e-6)
    # 1-D closed form: (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(2.0)
    # singular covariances (fewer samples than dimensions) stay finite and >= 0
    few = rng.normal(size=(5, 16))
    assert math.isfinite(metrics.frechet_from_features(few, few + 1.0))


# -- clustering ARI -------------------------------------------------------------------------


def test_kmeans_ari_separated_vs_random():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    blobs = rng.normal(size=(200, 3)) * 0.1 + np.eye(4, 3)[labels] * 5
    assert metrics.kmeans_ari(blobs, labels) == pytest.approx(1.0)
    assert abs(metrics.kmeans_ari(rng.normal(size=(200, 3)), labels)) < 0.05


# -- disentanglement ------------------------------------------------------------------------


def _factors(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, 4, n)
    cont = rng.uniform(size=(n, 3))
    return np.column_stack([shape, cont]).astype(np.float64), rng


def test_mig_permuted_factors_high_random_low():
    f, rng = _factors()
    perm = [2, 0, 3, 1]
    codes = np.column_stack([f[:, perm], rng.normal(size=(len(f), 2))])  # 4 factors + 2 nuisance
    good = disentangle.mig(codes, f)
    assert good["mig"] > 0.9 and min(good["per_factor"]) > 0.85
    assert disentangle.mig(rng.normal(size=(len(f), 6)), f)["mig"] < 0.05
    # one code carrying two factors: the gap of both collapses
    mixed = np.column_stack([f[:, 1] + f[:, 2], f[:, 0], f[:, 3], rng.normal(size=len(f))])
    assert disentangle.mig(mixed, f)["mig"] < good["mig"] - 0.2


def test_dci_permuted_factors_vs_random_vs_rotated():
    f, rng = _factors(1500)
    codes = np.column_stack([f[:, [3, 1, 0, 2]], rng.normal(size=(len(f), 2))])
    good = disentangle.dci(codes, f)
    assert good["disentanglement"] > 0.9 and good["completeness"] > 0.9
    assert good["informativeness"] > 0.9
    bad = disentangle.dci(rng.normal(size=(len(f), 6)), f)
    assert bad["disentanglement"] < 0.3 and bad["informativeness"] < 0.35
    # a 45-degree rotation of two continuous factors: informative but entangled
    c = f[:, 1:3] - 0.5
    rot = np.column_stack([c[:, 0] + c[:, 1], c[:, 0] - c[:, 1]])
    mid = disentangle.dci(np.column_stack([f[:, [0, 3]], rot]), f)
    assert mid["disentanglement"] < good["disentanglement"] - 0.15
    # closed forms of the importance -> D/C step
    d, c = disentangle.dci_from_importance(np.eye(3))
    assert (d, c) == (pytest.approx(1.0), pytest.approx(1.0))
    d, c = disentangle.dci_from_importance(np.ones((3, 3)))
    assert (d, c) == (pytest.approx(0.0), pytest.approx(0.0))


# -- IWAE bound against quadrature ------------------------------------------------------------


class ToyVAE(GenerativeModel):
    """z ~ N(0, 1) in 1-D, four Bernoulli pixels with logits w z + b; the encoder is a fixed,
    deliberately imperfect Gaussian. log p(x) is a 1-D integral: quadrature gives it exactly."""

    family = "toy"

    def __init__(self):
        super().__init__(None)
        self.w = nn.Parameter(torch.tensor([2.0, -1.5, 1.0, 3.0]))
        self.b = nn.Parameter(torch.tensor([0.5, 0.0, -1.0, 0.2]))

    def latent_blocks(self):
        return [LatentBlock("z", 1)]

    def encode(self, x, expert=None):
        s = x.flatten(1).sum(1, keepdim=True)
        return {"z": {"mu": 0.4 * (s - 2), "logvar": torch.full_like(s, math.log(0.5))}}

    def decode(self, codes, expert=None):
        return torch.sigmoid(codes["z"] * self.w + self.b).view(-1, 1, 2, 2)


def _quadrature_log_px(model, x):
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    logits = z[:, None] * model.w.double() + model.b.double()
    ll = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits[None].expand(len(x), -1, -1),
        x.flatten(1).double()[:, None].expand(-1, len(z), -1),
        reduction="none",
    ).sum(-1)
    log_prior = -0.5 * (math.log(2 * math.pi) + z**2)
    return torch.logsumexp(ll + log_prior, dim=1) + math.log(float(z[1] - z[0]))


@torch.no_grad()
def test_iwelbo_converges_to_the_exact_log_likelihood():
    torch.manual_seed(0)
    model = ToyVAE()
    x = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1.0]]).view(3, 1, 2, 2)
    exact = _quadrature_log_px(model, x).float()
    many = x.repeat(2000, 1, 1, 1)  # 2000 independent estimates of each image
    one = iwelbo(model, many, k=1).view(2000, 3).mean(0)
    k10 = iwelbo(model, many, k=10).view(2000, 3).mean(0)
    big = iwelbo(model, x, k=200_000, chunk=200_000)
    assert (one < k10).all() and (k10 < exact + 1e-3).all()  # the bound tightens with k
    assert torch.allclose(big, exact, atol=0.01)
    # k = 1 is the ELBO: E_q[log p(x|z)] - KL, here by the same Monte Carlo
    assert (exact - one > 0.05).all()


def test_iwelbo_refuses_implicit_models_and_uses_the_hook():
    """What the family declares in capabilities.likelihood decides: "none" is refused, "own"
    uses its log_likelihood_is."""

    class Implicit(ToyVAE):
        capabilities = Capabilities(likelihood="none")

    with pytest.raises(Unsupported):
        iwelbo(Implicit(), torch.zeros(1, 1, 2, 2))

    class Hooked(ToyVAE):
        capabilities = Capabilities(likelihood="own")

        def log_likelihood_is(self, x, k):
            return torch.full((len(x),), -float(k))

    assert iwelbo(Hooked(), torch.zeros(2, 1, 2, 2), k=7).tolist() == [-7.0, -7.0]


# -- the forgetting matrix --------------------------------------------------------------------


def test_forgetting_backward_and_forward_transfer():
    m = [[0.1, 0.5, 0.6], [0.2, 0.1, 0.4], [0.4, 0.3, 0.1]]  # mse, lower is better
    assert metrics.forgetting(m) == pytest.approx([0.3, 0.2, 0.0])
    assert metrics.backward_transfer(m) == pytest.approx(-0.25)
    # FWT: task 1 before training 0.5 vs untrained 0.8 (+0.3); task 2: 0.4 vs 0.8 (+0.4)
    assert metrics.forward_transfer(m, [0.8, 0.8, 0.8]) == pytest.approx(0.35)
    assert metrics.forward_transfer(m, None) is None
    elbo = [[-10.0, -50.0], [-12.0, -11.0]]
    assert metrics.forward_transfer(elbo, [-90.0, -80.0], higher_is_better=True) == 30.0
    # a joint phase (one snapshot after task 1): nothing was seen before any task
    assert metrics.forward_transfer([[0.1, 0.1]], [0.8, 0.8], after_tasks=[1]) is None
    assert metrics.forgetting([[0.1, 0.2]], after_tasks=[1]) == [0.0, 0.0]
