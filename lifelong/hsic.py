"""Kernel independence measures between latent spaces: HSIC and its d-variable form dHSIC.

Paper 002 (Ye & Bors, Deep Mixture Generative Autoencoders) regularises its mixture with
dHSIC(z_1, ..., z_K) (eq. 15) and shows pairwise HSIC heatmaps between components (Fig. 12).
The estimator is the V-statistic of Pfister et al., "Kernel-based tests for joint independence"
(JRSS-B 2018), the dHSIC the paper cites ([20], [38]). For n samples of d variables with Gram
matrices K_1..K_d ([n, n] each):

    dHSIC = 1/n^2 sum_ab prod_j K_j[a,b]
          + prod_j (1/n^2 sum_ab K_j[a,b])
          - 2/n sum_a prod_j (1/n sum_b K_j[a,b])

For d = 2 this is exactly the biased HSIC of Gretton et al. (2005), tr(K H L H) / n^2 with the
centring matrix H = I - 11^T/n. It is >= 0 and is zero in the population limit iff the variables
are jointly independent (for characteristic kernels such as the Gaussian).

Kernels are Gaussian, k(x, y) = exp(-|x - y|^2 / (2 sigma^2)), with sigma per variable from a
median heuristic computed on detached values (the bandwidth follows the codes' scale but is
not a path for the gradient; it can be overridden). Two heuristics (`heuristic=`):

- "dhsic" (the default): the reference R package dHSIC's (Pfister et al.; cran/dHSIC 2.2,
  src/rcpp_functions.cpp `median_bandwidth_rcpp`): sigma = sqrt(median(|x_a - x_b|^2) / 2) over
  distinct pairs, the median being the upper middle value of the sorted squared distances
  (element m // 2 of m), 0.001 when that median is 0. The package subsamples 1,000 points
  when n > 1,000; here every sample is used.
- "distance": sigma = the median distance itself (Gretton et al. 2008's form; the mean of the
  two middle values for an even count; 1.0 when it is 0): sqrt(2) x wider than "dhsic" for
  the same codes. MVAE's regulariser was built and tuned with it, and runs trained before the
  choice existed used it (MVAEConfig.hsic_bandwidth keeps it their meaning).

Everything else is differentiable, so dHSIC serves as a training regulariser. Gram matrices
are built from squared distances without a square root (the gradient of a distance is
undefined at 0, i.e. on the diagonal).

`hsic_matrix` computes each variable's Gram matrix once and reuses it for every pair and for the
joint dHSIC: K = 6 codes of 512 samples take a few tens of milliseconds on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Bandwidth = float | Sequence[float] | torch.Tensor | None


def _sq_dists(x: torch.Tensor) -> torch.Tensor:
    """x [..., n, p] -> squared Euclidean distances [..., n, n] (>= 0, differentiable
    everywhere)."""
    sq = x.pow(2).sum(dim=-1)
    return (sq[..., :, None] + sq[..., None, :] - 2.0 * x @ x.mT).clamp_min(0.0)


HEURISTICS = ("dhsic", "distance")


def check_heuristic(heuristic: str, name: str = "bandwidth heuristic") -> str:
    """`heuristic` if it is one of HEURISTICS, else a one-line ValueError naming `name`."""
    if heuristic not in HEURISTICS:
        raise ValueError(f"{name} must be 'dhsic' or 'distance', not {heuristic!r}")
    return heuristic


def _median_bandwidths(x: torch.Tensor, heuristic: str) -> torch.Tensor:
    """x [K, n, p] (double) -> [K]: the median-heuristic bandwidth of each of the K sets of n
    samples, "dhsic" or "distance" (module docstring)."""
    check_heuristic(heuristic)
    d2 = _sq_dists(x)
    n = d2.shape[1]
    if n < 2:
        return torch.ones(len(x), dtype=x.dtype, device=x.device)
    iu = torch.triu_indices(n, n, offset=1, device=d2.device)
    v = d2[:, iu[0], iu[1]]  # [K, m] squared distances between distinct samples
    m = v.shape[1]
    if heuristic == "dhsic":  # R dHSIC: nth_element at m / 2, then sqrt(0.5 * it)
        bw = (0.5 * v.kthvalue(m // 2 + 1, dim=1).values).sqrt()
        return torch.where(bw > 0, bw, torch.full_like(bw, 0.001))
    d = v.sqrt()
    med = 0.5 * (d.kthvalue((m + 1) // 2, dim=1).values + d.kthvalue(m // 2 + 1, dim=1).values)
    return torch.where(med > 1e-12, med, torch.ones_like(med))


def median_bandwidth(x: torch.Tensor, heuristic: str = "dhsic") -> float:
    """The median-heuristic bandwidth of x [n, p] (a float, detached): "dhsic" (R dHSIC's,
    sqrt(median squared distance / 2)) or "distance" (the median distance)."""
    with torch.no_grad():
        return float(_median_bandwidths(x.detach().flatten(1).double()[None], heuristic)[0])


def median_bandwidths(codes: Sequence[torch.Tensor], heuristic: str = "dhsic") -> torch.Tensor:
    """`median_bandwidth` of K codes of one shape [n, p] at once: a tensor [K] on their device.

    For a training step: one batched computation and no device-to-host copy (on a GPU each
    float() of `median_bandwidth` is a sync)."""
    with torch.no_grad():
        x = torch.stack([c.detach().flatten(1) for c in codes]).double()  # [K, n, p]
        return _median_bandwidths(x, heuristic).to(codes[0].dtype)


def gram(
    x: torch.Tensor, bandwidth: float | torch.Tensor | None = None, heuristic: str = "dhsic"
) -> torch.Tensor:
    """Gaussian Gram matrix of x [n, p]: [n, n] with entries exp(-|x_a - x_b|^2 / (2 s^2)),
    s = `bandwidth` (a float, or a 0-d tensor left on its device) or the median heuristic."""
    s = median_bandwidth(x, heuristic) if bandwidth is None else bandwidth
    if not torch.is_tensor(s):
        s = float(s)
        if s <= 0:
            raise ValueError(f"kernel bandwidth must be > 0, got {s}")
    return torch.exp(-_sq_dists(x.flatten(1)) / (2.0 * s * s))


def _bandwidths(codes: Sequence[torch.Tensor], bandwidth: Bandwidth, heuristic: str) -> list:
    check_heuristic(heuristic)
    if bandwidth is None:
        return [median_bandwidth(c, heuristic) for c in codes]
    if isinstance(bandwidth, (int, float)):
        return [float(bandwidth)] * len(codes)
    if torch.is_tensor(bandwidth):  # [K] on the codes' device: no host copy
        bw = list(bandwidth.reshape(-1).unbind())
    else:
        bw = [float(b) for b in bandwidth]
    if len(bw) != len(codes):
        raise ValueError(f"{len(bw)} bandwidths given for {len(codes)} variables")
    return bw


def _check(codes: Sequence[torch.Tensor]) -> None:
    if len(codes) < 2:
        raise ValueError("HSIC needs at least two variables")
    n = codes[0].shape[0]
    if any(c.shape[0] != n for c in codes) or n < 2:
        raise ValueError("every variable needs the same number (>= 2) of samples")


def _centre(k: torch.Tensor) -> torch.Tensor:
    """H K H for the centring matrix H = I - 11^T/n, without forming H."""
    row = k.mean(dim=1, keepdim=True)
    col = k.mean(dim=0, keepdim=True)
    return k - row - col + k.mean()


def dhsic_from_grams(grams: Sequence[torch.Tensor]) -> torch.Tensor:
    """The dHSIC V-statistic (module docstring) from Gram matrices [n, n] of d >= 2 variables:
    a scalar tensor."""
    prod = grams[0]
    for k in grams[1:]:
        prod = prod * k
    term1 = prod.mean()
    term2 = torch.stack([k.mean() for k in grams]).prod()
    rows = torch.stack([k.mean(dim=1) for k in grams]).prod(dim=0)  # [n]
    return term1 + term2 - 2.0 * rows.mean()


def dhsic(
    codes: Sequence[torch.Tensor], bandwidth: Bandwidth = None, heuristic: str = "dhsic"
) -> torch.Tensor:
    """dHSIC(z_1, ..., z_d) (paper 002 eq. 15) of d >= 2 variables given as [n, p_j] samples
    (row a of every tensor is the same draw); a differentiable scalar. With bandwidth=None and
    the default heuristic it is what R's dHSIC::dhsic(X)$dHSIC computes for n <= 1000."""
    _check(codes)
    bw = _bandwidths(codes, bandwidth, heuristic)
    return dhsic_from_grams([gram(c, s) for c, s in zip(codes, bw, strict=True)])


def hsic(
    x: torch.Tensor, y: torch.Tensor, bandwidth: Bandwidth = None, heuristic: str = "dhsic"
) -> torch.Tensor:
    """Biased HSIC (paper 002 eq. 14) between paired samples x [n, p] and y [n, q]:
    tr(K H L H) / n^2, a differentiable scalar (equals dhsic([x, y]))."""
    _check([x, y])
    bx, by = _bandwidths([x, y], bandwidth, heuristic)
    return (_centre(gram(x, bx)) * gram(y, by)).mean()


@dataclass
class HSICResult:
    """matrix [K, K]: HSIC between every pair of variables (diagonal: HSIC(z_i, z_i), the
    self-dependence that normalises it); joint: dHSIC of all K; bandwidths: sigma per variable."""

    matrix: torch.Tensor
    joint: torch.Tensor
    bandwidths: list[float]


def hsic_matrix(
    codes: Sequence[torch.Tensor],
    bandwidth: Bandwidth = None,
    normalise: bool = False,
    joint: bool = True,
    heuristic: str = "dhsic",
) -> HSICResult:
    """Pairwise HSIC of K variables (paper 002 Fig. 12) and their joint dHSIC (eq. 15).

    codes: K tensors [n, p_i] of paired samples. Each Gram matrix is built and centred once;
    the pairwise matrix is then one product of the flattened centred Grams (HSIC(i, j) =
    <H K_i H, H K_j H> / n^2). normalise=True divides by sqrt(HSIC(i,i) HSIC(j,j)), giving values
    in [0, 1] comparable across bandwidths and latent sizes. joint=False skips the dHSIC.
    heuristic: the median heuristic used where no bandwidth is given ("dhsic" / "distance").
    """
    _check(codes)
    bw = _bandwidths(codes, bandwidth, heuristic)
    grams = [gram(c, s) for c, s in zip(codes, bw, strict=True)]
    n = grams[0].shape[0]
    flat = torch.stack([_centre(k).reshape(-1) for k in grams])  # [K, n^2]
    matrix = flat @ flat.T / (n * n)
    if normalise:
        d = matrix.diagonal().clamp_min(1e-30).sqrt()
        matrix = matrix / (d[:, None] * d[None, :])
    j = dhsic_from_grams(grams) if joint else torch.tensor(float("nan"))
    return HSICResult(matrix, j, bw)


def mean_pairwise(matrix: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of a [K, K] HSIC matrix (a scalar)."""
    k = matrix.shape[0]
    off = ~torch.eye(k, dtype=torch.bool, device=matrix.device)
    return matrix[off].mean()
