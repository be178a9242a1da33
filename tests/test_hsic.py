"""HSIC / dHSIC (paper 002 eqs. 13-15; Pfister et al. 2018): values, not only shapes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lifelong import hsic


def _pairs(seed: int = 0, n: int = 400):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    independent = torch.randn(n, 3, generator=g)
    dependent = x + 0.1 * torch.randn(n, 3, generator=g)
    return x, independent, dependent


def test_independent_codes_give_near_zero_hsic_and_dependent_ones_do_not():
    x, ind, dep = _pairs()
    h_ind, h_dep = float(hsic.hsic(x, ind)), float(hsic.hsic(x, dep))
    assert 0 <= h_ind < 2e-3
    assert h_dep > 20 * h_ind
    # Dependence that correlation misses: y = x^2 (uncorrelated with x, fully dependent).
    g = torch.Generator().manual_seed(1)
    u = torch.randn(400, 1, generator=g)
    assert float(hsic.hsic(u, u**2)) > 10 * float(hsic.hsic(u, torch.randn(400, 1, generator=g)))


def test_independent_hsic_shrinks_with_n():
    """The V-statistic's bias is O(1/n): for independent codes it goes to 0 as n grows."""
    vals = []
    for n in (100, 1600):
        g = torch.Generator().manual_seed(n)
        x, y = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
        vals.append(float(hsic.hsic(x, y)))
    assert vals[1] < vals[0] / 5


def test_dhsic_of_two_variables_is_pairwise_hsic_and_the_trace_formula():
    x, _, dep = _pairs(n=120)
    n = len(x)
    k, l = hsic.gram(x), hsic.gram(dep)
    h = torch.eye(n) - torch.full((n, n), 1.0 / n)
    trace = torch.trace(k @ h @ l @ h) / n**2  # Gretton et al. (2005), biased HSIC
    assert torch.allclose(hsic.dhsic([x, dep]), hsic.hsic(x, dep), rtol=1e-5)
    assert torch.allclose(hsic.hsic(x, dep), trace, rtol=1e-4)
    res = hsic.hsic_matrix([x, dep])
    assert torch.allclose(res.matrix[0, 1], trace, rtol=1e-4)
    assert torch.allclose(res.joint, trace, rtol=1e-4)


def test_dhsic_is_the_mmd_between_joint_and_product_of_marginals():
    """dHSIC = |mu_joint - mu_1 x mu_2 x mu_3|^2 in the product-kernel RKHS, computed here by
    brute force over all n^3 tuples of the product of the empirical marginals."""
    g = torch.Generator().manual_seed(3)
    n = 6
    a = torch.randn(n, 2, generator=g)
    b = a[:, :1] + 0.3 * torch.randn(n, 1, generator=g)
    c = torch.randn(n, 2, generator=g)
    ks = [hsic.gram(v, 1.0) for v in (a, b, c)]
    tuples = list(itertools.product(range(n), repeat=3))
    joint = [(i, i, i) for i in range(n)]

    def mean_kernel(p, q):
        return sum(math.prod(float(ks[j][s[j], t[j]]) for j in range(3)) for s in p for t in q) / (
            len(p) * len(q)
        )

    mmd = mean_kernel(joint, joint) + mean_kernel(tuples, tuples) - 2 * mean_kernel(joint, tuples)
    assert math.isclose(float(hsic.dhsic([a, b, c], 1.0)), mmd, rel_tol=1e-4)


def test_matrix_is_symmetric_and_matches_pairwise_calls():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(200, 2, generator=g)
    codes = [base + 0.5 * torch.randn(200, 2, generator=g) for _ in range(3)]
    codes.append(torch.randn(200, 4, generator=g))
    res = hsic.hsic_matrix(codes)
    assert torch.allclose(res.matrix, res.matrix.T)
    for i, j in itertools.combinations(range(4), 2):
        assert torch.allclose(res.matrix[i, j], hsic.hsic(codes[i], codes[j]), rtol=1e-4)
        flipped = hsic.hsic(codes[j], codes[i])
        assert torch.allclose(hsic.hsic(codes[i], codes[j]), flipped, rtol=1e-4)
    assert torch.allclose(res.joint, hsic.dhsic(codes), rtol=1e-5)
    # The three noisy copies of `base` depend on each other; the fourth code on none of them.
    assert float(res.matrix[:3, 3].max()) < float(res.matrix[0, 1]) / 5
    norm = hsic.hsic_matrix(codes, normalise=True).matrix
    assert torch.allclose(norm.diagonal(), torch.ones(4)) and float(norm.max()) <= 1 + 1e-5


def test_median_heuristics_on_known_examples():
    x = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 -> median 2
    assert hsic.median_bandwidth(x, "distance") == pytest.approx(2.0)
    four = torch.tensor([[0.0], [1.0], [3.0], [7.0]])  # 1, 3, 7, 2, 6, 4 -> (3 + 4) / 2
    assert hsic.median_bandwidth(four, "distance") == pytest.approx(3.5)
    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])  # 5, 10, 5 in 2-D
    assert hsic.median_bandwidth(pts, "distance") == pytest.approx(5.0)
    # R dHSIC: squared distances sorted, element m // 2 (the upper middle), sqrt(it / 2).
    assert hsic.median_bandwidth(x) == pytest.approx(math.sqrt(4 / 2))  # 1, 4, 9 -> 4
    assert hsic.median_bandwidth(four) == pytest.approx(math.sqrt(16 / 2))  # 1,4,9,16,36,49
    assert hsic.median_bandwidth(pts) == pytest.approx(math.sqrt(25 / 2))
    k = hsic.gram(x, heuristic="distance")
    assert float(k[0, 2]) == pytest.approx(math.exp(-9 / 8))
    assert float(hsic.gram(x)[0, 2]) == pytest.approx(math.exp(-9 / 4))  # sigma^2 = 2
    # Overrides: one bandwidth for all, or one per variable; the median is scale-equivariant.
    assert hsic.hsic_matrix([x, 2 * x], heuristic="distance").bandwidths == pytest.approx(
        [2.0, 4.0]
    )
    assert hsic.hsic_matrix([x, 2 * x], bandwidth=[1.0, 3.0]).bandwidths == [1.0, 3.0]
    with pytest.raises(ValueError):
        hsic.hsic_matrix([x, x], bandwidth=[1.0])
    with pytest.raises(ValueError, match="'dhsic' or 'distance'"):
        hsic.dhsic([x, x], heuristic="median")


# -- against an independent implementation: numpy, from the formulas, as the R package does --


def _np_bandwidth(x: np.ndarray, heuristic: str) -> float:
    n = len(x)
    d2 = np.array([((x[a] - x[b]) ** 2).sum() for a in range(n) for b in range(a + 1, n)])
    if heuristic == "dhsic":  # dHSIC's median_bandwidth_rcpp: nth_element at lentot / 2
        bw = math.sqrt(0.5 * np.sort(d2)[len(d2) // 2])
        return bw if bw > 0 else 0.001
    med = float(np.median(np.sqrt(d2)))
    return med if med > 1e-12 else 1.0


def _np_gram(x: np.ndarray, bw: float) -> np.ndarray:  # gaussian_grammat_rcpp
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * bw**2))


def _np_dhsic(xs: list[np.ndarray], heuristic: str) -> float:
    """R's dhsic(): term1 = sum(prod_j K_j) / n^2, term2 = prod_j sum(K_j) / n^2,
    term3 = 2/n sum_a prod_j colSums(K_j)[a] / n."""
    n = len(xs[0])
    ks = [_np_gram(x, _np_bandwidth(x, heuristic)) for x in xs]
    term1, term2, term3 = np.ones((n, n)), 1.0, np.full(n, 2.0 / n)
    for k in ks:
        term1 = term1 * k
        term2 = term2 * k.sum() / n**2
        term3 = term3 * k.sum(axis=0) / n
    return float(term1.sum() / n**2 + term2 - term3.sum())


def _np_hsic_trace(x: np.ndarray, y: np.ndarray, heuristic: str) -> float:
    n = len(x)
    k = _np_gram(x, _np_bandwidth(x, heuristic))
    l_ = _np_gram(y, _np_bandwidth(y, heuristic))
    h = np.eye(n) - np.full((n, n), 1.0 / n)
    return float(np.trace(k @ h @ l_ @ h) / n**2)


@pytest.mark.parametrize("heuristic", ["dhsic", "distance"])
@pytest.mark.parametrize("n", [38, 64])  # 703 and 2016 pairs: an odd and an even count
def test_values_match_an_independent_numpy_implementation(heuristic, n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, 3))
    b = a[:, :2] ** 2 + 0.5 * rng.normal(size=(n, 2))
    c = rng.normal(size=(n, 4)) * 3.0
    xs = [a, b, c]
    ts = [torch.tensor(v) for v in xs]
    for v, t in zip(xs, ts, strict=True):
        assert hsic.median_bandwidth(t, heuristic) == pytest.approx(_np_bandwidth(v, heuristic))
    want = _np_dhsic(xs, heuristic)
    assert float(hsic.dhsic(ts, heuristic=heuristic)) == pytest.approx(want, rel=1e-9)
    res = hsic.hsic_matrix(ts, heuristic=heuristic)
    assert float(res.joint) == pytest.approx(want, rel=1e-9)
    for i, j in itertools.combinations(range(3), 2):
        pair = _np_hsic_trace(xs[i], xs[j], heuristic)
        assert float(res.matrix[i, j]) == pytest.approx(pair, rel=1e-9)
        assert float(hsic.hsic(ts[i], ts[j], heuristic=heuristic)) == pytest.approx(pair, rel=1e-9)
        assert _np_dhsic([xs[i], xs[j]], heuristic) == pytest.approx(pair, rel=1e-9)


def test_the_two_heuristics_differ_by_sqrt2_on_a_continuous_sample():
    """The R package's sigma is sqrt(median d^2 / 2) = median d / sqrt(2) (up to which middle
    value an even count takes)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(301, 2, generator=g)  # 45,150 pairs: both take the same middle value
    r = hsic.median_bandwidth(x, "distance") / hsic.median_bandwidth(x, "dhsic")
    assert r == pytest.approx(math.sqrt(2), rel=1e-4)


@pytest.mark.parametrize("heuristic", ["dhsic", "distance"])
def test_dhsic_near_zero_for_independent_codes_and_clearly_larger_for_dependent(heuristic):
    """Three variables. Independent: only the V-statistic's O(1/n) bias (measured 2.3e-3 /
    8e-4 at n = 300 / 600 with "dhsic", 1.4e-3 / 4e-4 with "distance"); dependent: ~0.02 at
    both sizes."""
    vals = {}
    for n in (300, 600):
        g = torch.Generator().manual_seed(4)
        a = torch.randn(n, 3, generator=g)
        independent = [a, torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)]
        b = a[:, :2].abs() + 0.2 * torch.randn(n, 2, generator=g)
        dependent = [a, b, a.sum(1, keepdim=True)]
        vals[n] = [float(hsic.dhsic(v, heuristic=heuristic)) for v in (independent, dependent)]
    for ind, dep in vals.values():
        assert 0 <= ind < 3e-3 and dep > 8 * ind
    assert vals[600][0] < vals[300][0] / 2  # the bias shrinks with n; the dependence does not
    assert vals[600][1] > 0.8 * vals[300][1]


def test_hsic_is_differentiable_and_its_gradient_reduces_dependence():
    x, _, dep = _pairs(n=128)
    y = dep.clone().requires_grad_(True)
    # Adam: HSIC values are ~1e-2 with per-sample gradients ~1/n, so plain SGD barely moves.
    opt = torch.optim.Adam([y], lr=0.05)
    start = float(hsic.hsic(x, y.detach()))
    for _ in range(30):
        loss = hsic.dhsic([x, y])
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(y.grad).all()
        opt.step()
    assert float(hsic.hsic(x, y.detach())) < start / 4


def test_batched_median_bandwidths_equal_the_per_code_ones_and_feed_dhsic():
    g = torch.Generator().manual_seed(0)
    codes = [torch.randn(33, 3, generator=g) * s for s in (0.5, 1.0, 4.0)]
    codes.append(torch.ones(33, 3))  # every sample identical: the 1.0 fallback
    batched = hsic.median_bandwidths(codes, "distance")
    assert batched.shape == (4,) and batched.dtype == torch.float32
    want = torch.tensor([hsic.median_bandwidth(c, "distance") for c in codes])
    assert torch.allclose(batched, want, rtol=1e-6) and batched[3] == 1.0
    dh = hsic.median_bandwidths(codes)  # R dHSIC's fallback for a zero median: 0.001
    want = torch.tensor([hsic.median_bandwidth(c) for c in codes])
    assert torch.allclose(dh, want, rtol=1e-6) and float(dh[3]) == pytest.approx(0.001)
    four = codes[:3]
    as_tensor = hsic.dhsic(four, hsic.median_bandwidths(four))
    assert torch.allclose(as_tensor, hsic.dhsic(four), rtol=1e-5)
