"""Metrics as pure functions of arrays/tensors (no models): image quality, feature statistics,
clustering agreement and what the forgetting matrix says.

Forgetting matrices are indexed [snapshot k][task j] (row k: after task k, or after the phase
ending at `after_tasks[k]`); None where undefined. Model-driven metrics (importance-weighted
ELBO, Frechet distance of a model's samples, eq. 27 per expert) live in `lifelong.likelihood`
and `lifelong.evaluation`; disentanglement scores (MIG, DCI) in `lifelong.disentangle`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

# -- reconstruction -------------------------------------------------------------------------


def mse(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over pixels: [N, C, H, W] x2 -> [N] (images in [0, 1])."""
    return (x - recon).pow(2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: [N]."""
    return -10.0 * torch.log10(mse(x, recon).clamp_min(1e-10))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps [size] (the separable SSIM window of Wang et al. 2004)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(t**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window: [N, C, H, W] x2 -> [N].

    Local means, variances and covariance are Gaussian-weighted (11 taps, sigma 1.5, population
    statistics); the SSIM map is taken over "valid" positions only (no padding) and averaged over
    positions and channels. This equals scikit-image's structural_similarity(gaussian_weights=True,
    use_sample_covariance=False, data_range=1), which filters with reflection and then crops the
    same border. Images smaller than the window use the largest odd window that fits.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two [N, C, H, W] batches of one shape, got {x.shape}, {y.shape}"
        )
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # odd
    g = gaussian_window(size, sigma).to(x.device)
    c = x.shape[1]
    kh = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    x, y = x.double(), y.double()
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1).float()


def transfer_score(x: torch.Tensor, recon: torch.Tensor) -> float:
    """Paper 000 eq. 27 with delta = MSE: s(theta_k, j) = 1/N_j sum_i delta(x_ij, f_k(x_ij)),
    where recon = f_k(x) is the reconstruction through mixture component k. The paper's MSE is
    a per-image sum over pixels; ours is the per-pixel mean (the project's `mse`), i.e. the
    paper's value divided by C*H*W, so curves are comparable across image sizes."""
    return float(mse(x, recon).mean())


# -- feature statistics: Frechet distance ---------------------------------------------------


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, float64) of features [N, D]."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature statistics need [N >= 2, D] features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (paper 001 App. 9.10, eq. 19):
    ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}).

    Numerical care as in the usual implementations: sqrtm of a product of covariances estimated
    from few samples may be singular, inaccurate or slightly complex. If the result is not finite
    or its residual is large, eps * I is added to both covariances; a small imaginary part (round
    off) is dropped; a large one is an error. The result is clamped at 0.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    c1, c2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or c1.shape != c2.shape or c1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: shapes differ: {mu1.shape}/{c1.shape}, {c2.shape}")
    diff = mu1 - mu2
    prod = c1 @ c2
    covmean = linalg.sqrtm(prod)
    resid = np.linalg.norm(covmean @ covmean - prod) / max(np.linalg.norm(prod), 1e-30)
    if not np.isfinite(covmean).all() or resid > 1e-3:
        offset = np.eye(len(c1)) * eps
        covmean = linalg.sqrtm((c1 + offset) @ (c2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"frechet_distance: sqrtm has a large imaginary part "
                f"({np.abs(covmean.imag).max():.3g}); too few samples for the feature dimension?"
            )
        covmean = covmean.real
    value = diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def frechet_from_features(a, b) -> float:
    """Frechet distance between two feature sets [N, D] and [M, D] (Gaussian fits of each)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# -- clustering -----------------------------------------------------------------------------


def kmeans_ari(codes, labels, n_clusters: int | None = None, seed: int = 0) -> float:
    """Adjusted Rand index between k-means clusters of `codes` [N, D] and `labels` [N] (paper 004
    Table 1). k defaults to the number of distinct labels; 10 restarts, seeded. 1 = the clusters
    are the classes, ~0 = chance."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    codes = np.asarray(codes, dtype=np.float64)
    labels = np.asarray(labels)
    k = int(n_clusters or len(np.unique(labels)))
    if k < 2 or len(codes) <= k:
        return float("nan")
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(codes)
    return float(adjusted_rand_score(labels, pred))


# -- what each stored metric is ------------------------------------------------------------


class MetricDef(NamedTuple):
    """How every page, table and summary names a stored metric and which way is better: the
    one list the Overview, Forgetting and comparison views read."""

    label: str
    unit: str  # "" when unitless
    higher_is_better: bool


DEFINITIONS: dict[str, MetricDef] = {
    "mse": MetricDef("reconstruction MSE", "", False),
    "elbo": MetricDef("ELBO", "nats", True),
    "psnr": MetricDef("PSNR", "dB", True),
    "routing_accuracy": MetricDef("routing accuracy", "", True),
    "class_accuracy": MetricDef("classification accuracy (q(d|x) of the chosen expert)", "", True),
    "iwelbo": MetricDef("IWELBO", "nats", True),
    "ssim": MetricDef("SSIM", "", True),
    "frechet": MetricDef("Fréchet distance (classifier features)", "", False),
    "fitting": MetricDef("Fitting Capacity (classifier trained on samples)", "", True),
    "ari": MetricDef("k-means ARI of codes vs classes", "", True),
    "transfer": MetricDef("MSE through each expert (paper 000 eq. 27)", "", False),
    "task_shares": MetricDef("share of samples generated for task j that look like it", "", True),
    "drift": MetricDef("latent drift (distance moved / spread when learnt)", "", False),
}


def definition(name: str) -> MetricDef:
    """The metric's definition; an unknown name (a newer run's) reads as higher-is-better."""
    return DEFINITIONS.get(name, MetricDef(name, "", True))


def label(name: str) -> str:
    """'ELBO (nats)', 'reconstruction MSE': the name shown for a metric."""
    d = definition(name)
    return f"{d.label} ({d.unit})" if d.unit else d.label


# -- the forgetting matrix ------------------------------------------------------------------


def _learnt_row(j: int, after_tasks: list[int]) -> int | None:
    """Index of the first row (snapshot) taken after task j was trained."""
    return next((k for k, t in enumerate(after_tasks) if t >= j), None)


def forgetting(
    matrix: list[list[float | None]],
    higher_is_better: bool = False,
    after_tasks: list[int] | None = None,
) -> list:
    """Per task j: how much worse its value is after the last snapshot than right after it was
    learnt (the first snapshot after task j). Positive = forgotten. [T] (None for tasks not yet
    learnt). `after_tasks[k]` is the task after which row k was taken (default k)."""
    if not matrix:
        return []
    after_tasks = list(range(len(matrix))) if after_tasks is None else after_tasks
    last = matrix[-1]
    out = []
    for j in range(len(last)):
        r = _learnt_row(j, after_tasks)
        if r is None or matrix[r][j] is None or last[j] is None:
            out.append(None)
            continue
        delta = last[j] - matrix[r][j]
        out.append(-delta if higher_is_better else delta)
    return out


def backward_transfer(
    matrix: list[list[float | None]],
    higher_is_better: bool = False,
    after_tasks: list[int] | None = None,
):
    """Mean change on earlier tasks after the last one (Lopez-Paz & Ranzato); the sign is such
    that positive means the later tasks helped. None with fewer than two snapshots."""
    after_tasks = list(range(len(matrix))) if after_tasks is None else after_tasks
    if len(matrix) < 2:
        return None
    earlier = [j for j in range(len(matrix[-1])) if j <= after_tasks[-2]]
    f = forgetting(matrix, higher_is_better, after_tasks)
    vals = [f[j] for j in earlier if f[j] is not None]
    return -sum(vals) / len(vals) if vals else None


def forward_transfer(
    matrix: list[list[float | None]],
    initial: list[float | None] | None,
    higher_is_better: bool = False,
    after_tasks: list[int] | None = None,
):
    """Forward transfer (Lopez-Paz & Ranzato 2017, GEM):

        FWT = 1/|J| sum_{j in J} sign * (R[before j][j] - b_j)

    where R[before j] is the last snapshot taken before task j was trained (so task j's value
    there comes only from what earlier tasks taught), b_j is the value of the untrained model
    (`initial`, the run's initial weights) on task j, J the tasks that have such a snapshot, and
    sign = +1 if higher is better, -1 otherwise. Positive = learning earlier tasks already
    helped on task j. None without an initial row or with no task in J."""
    if not matrix or initial is None:
        return None
    after_tasks = list(range(len(matrix))) if after_tasks is None else after_tasks
    sign = 1.0 if higher_is_better else -1.0
    vals = []
    for j in range(len(initial)):
        before = [k for k, t in enumerate(after_tasks) if t < j]
        if not before or j >= len(matrix[before[-1]]):
            continue
        r, b = matrix[before[-1]][j], initial[j]
        if r is not None and b is not None:
            vals.append(sign * (r - b))
    return sum(vals) / len(vals) if vals else None


def drift(
    codes: list, task, after_tasks: list[int] | None = None, n_tasks: int | None = None
) -> list[list[float | None]]:
    """Latent drift [snapshot k][task j]: how far task j's codes moved after it was learnt.

    `codes[k]` [N, d_k] are the codes of the same N images at snapshot k (row k: after task
    `after_tasks[k]`, default k), `task` [N] each image's task. With r the first snapshot
    taken after task j was trained, the value is

        mean_i ||z_i^k - z_i^r|| / s_j,   s_j = sqrt(mean_i ||z_i^r - mean(z^r)||^2)

    over task j's images: the mean Euclidean distance its codes moved, in units of their RMS
    spread around their mean when task j was learnt, so runs with codes of any scale compare
    (0 = unchanged; sqrt(2) ~ as far apart as two random codes of the task). Codes of fewer
    dimensions (a snapshot before a block grew) are padded with zeros. None before task j was
    learnt, and where it has no image or no spread."""
    arrays = [np.asarray(c, dtype=np.float64) for c in codes]
    task = np.asarray(task)
    after_tasks = list(range(len(arrays))) if after_tasks is None else list(after_tasks)
    n_tasks = int(task.max()) + 1 if n_tasks is None and len(task) else int(n_tasks or 0)
    width = max((a.shape[1] for a in arrays), default=0)
    arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]
    out = [[None] * n_tasks for _ in arrays]
    for j in range(n_tasks):
        r = _learnt_row(j, after_tasks)
        rows = task == j
        if r is None or not rows.any():
            continue
        ref = arrays[r][rows]
        spread = math.sqrt(float(((ref - ref.mean(0)) ** 2).sum(1).mean()))
        if not spread > 0:
            continue
        for k in range(r, len(arrays)):
            moved = np.linalg.norm(arrays[k][rows] - ref, axis=1).mean()
            out[k][j] = finite(float(moved) / spread)
    return out


def finite(value: float) -> float | None:
    """JSON-safe float: NaN/inf become None."""
    return None if value is None or not math.isfinite(value) else float(value)


# What `python -m lifelong eval` computes and stores in a run (lifelong/runeval.py): the
# descriptions its --help and the app show, which are matrices [after task k][task j], and
# which need the feature classifier.
EVAL_METRICS = {
    "iwelbo": "importance-weighted ELBO, k samples (nats; NLL = -value) [after task k][task j]",
    "ssim": "SSIM of reconstructions (Gaussian window 11, sigma 1.5) [after task k][task j]",
    "frechet": "Frechet distance (classifier features) of samples vs test images: over the "
    "tasks seen so far per snapshot, and [after task k][task j]",
    "ari": "k-means ARI of codes vs class labels [after task k][task j]",
    "mig": "mutual information gap vs ground-truth factors (last snapshot, shapes tasks)",
    "dci": "DCI disentanglement / completeness / informativeness (last snapshot, shapes tasks)",
    "transfer": "paper 000 eq. 27 s(theta_k, j) = MSE through expert k on task j, per snapshot",
    "forward": "forward transfer of mse and elbo relative to the untrained model (GEM)",
    "task_shares": "share of the samples generated for task j (LGM: z_d fixed to its code, "
    "Fig. 5b; mixtures: its expert; task-blind priors: the same samples for every j) that a "
    "task probe (logistic regression, classifier features of real images) calls task j "
    "[after task k][task j]; the probe's accuracy on real test images",
    "fitting": "Fitting Capacity (Lesort et al. 2019): a classifier trained on the model's "
    "samples of each seen task (label = task), accuracy on the real test images: over the "
    "seen tasks per snapshot, and [after task k][task j]",
    "populations": "CPVAE (paper 004, last snapshot): eqs. 7-8 population accuracy with k "
    "importance samples (Table 2) and k-means ARI of shared / private codes (Table 1)",
    "components": "mixtures (paper 002, last snapshot): mean pairwise HSIC between the "
    "components' codes on 512 test images (R dHSIC bandwidths, raw and normalised; Fig. 12) "
    "and the mixture's reconstruction MSE against each component's alone",
    "drift": "latent drift: mean distance task j's codes (every test image, through the expert "
    "holding it for mixtures) moved from the snapshot after task j to snapshot k, over their "
    "spread then; lower is steadier [after task k][task j]. --write also stores the Latent "
    "map's time-lapse (one PCA of those codes over every snapshot)",
}
EVAL_MATRIX = (
    "iwelbo",
    "ssim",
    "frechet",
    "fitting",
    "ari",
    "transfer",
    "task_shares",
    "drift",
)
EVAL_NEEDS_CLASSIFIER = ("frechet", "fitting", "task_shares")
