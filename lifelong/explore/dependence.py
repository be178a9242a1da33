"""The dHSIC heatmap's computations: how dependent the experts' latent spaces are.

Paper 002 regularises its components towards independent codes with dHSIC (eq. 15) and shows
the pairwise HSIC between components as heatmaps for beta = 1 vs 10 (Fig. 12). Here every
expert encodes the same images; each expert's Gram matrix is built once (lifelong.hsic) and
reused across pairs.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong import hsic


@torch.no_grad()
def expert_codes(model, x: torch.Tensor) -> list[torch.Tensor]:
    """x [n, C, H, W] -> one [n, d_k] tensor of posterior means per expert (same images)."""
    block = {b.owner: b.name for b in model.latent_blocks()}
    return [model.encode(x, k)[block[k]]["mu"].float().cpu() for k in model.experts()]


def images(tests: list, task: int | None, n: int = 512, seed: int = 0) -> torch.Tensor:
    """n test images of one task, or spread over every task (task=None), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    pool = [tests[task]] if task is not None else tests
    per = max(1, n // len(pool))
    return torch.cat([d.x[torch.randperm(len(d), generator=g)[:per]] for d in pool])[:n]


def heatmap(
    model, x: torch.Tensor, scale: float = 1.0, normalise: bool = True, heuristic: str = "dhsic"
) -> dict:
    """Pairwise HSIC between experts and their joint dHSIC on images x.

    scale multiplies each expert's median-heuristic bandwidth (1 = the heuristic); heuristic:
    "dhsic" (the R dHSIC package's, sqrt(median squared distance / 2)) or "distance" (the
    median distance, sqrt(2) wider; MVAE's regulariser by default). Returns {"experts",
    "matrix" [K, K] list, "joint", "mean_pairwise", "bandwidths", "heuristic", "codes": list
    of [n, d_k]}."""
    codes = expert_codes(model, x)
    bw = [scale * hsic.median_bandwidth(c, heuristic) for c in codes]
    res = hsic.hsic_matrix(codes, bandwidth=bw, normalise=normalise)
    return {
        "experts": model.experts(),
        "matrix": res.matrix.tolist(),
        "joint": float(res.joint),
        "mean_pairwise": float(hsic.mean_pairwise(res.matrix)),
        "bandwidths": res.bandwidths,
        "heuristic": heuristic,
        "codes": codes,
    }


def first_component(codes: torch.Tensor) -> np.ndarray:
    """[n, d] -> [n] projection on the first principal axis (a pair's scatter plots these)."""
    c = codes.double().numpy()
    c = c - c.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[0]


@torch.no_grad()
def components(model, tests: list, n: int = 512, seed: int = 0) -> dict:
    """Paper 002's two figures of a mixture on n test images spread over every task: how
    dependent its components' codes are (Fig. 12: mean pairwise HSIC with the R dHSIC
    package's bandwidths, raw and normalised, as the dHSIC page shows by default) and what
    the mixture gains over one component (the model's own reconstruction's MSE against each
    component's alone, through its own encoder and decoder). Needs >= 2 experts."""
    experts = model.experts()
    if len(experts) < 2:
        raise ValueError("it has a single component")
    x = images(tests, None, n, seed)
    raw = heatmap(model, x, normalise=False)
    norm = hsic.hsic_matrix(raw["codes"], bandwidth=raw["bandwidths"], normalise=True)

    def mse(recon: torch.Tensor) -> float:
        return float(((recon.float().cpu() - x) ** 2).mean())

    per = [mse(model.reconstruct(x, expert=k)) for k in experts]
    return {
        "n": len(x),
        "experts": experts,
        "mean_pairwise_hsic": raw["mean_pairwise"],
        "mean_pairwise_hsic_normalised": float(hsic.mean_pairwise(norm.matrix)),
        "matrix": raw["matrix"],
        "mixture_mse": mse(model.reconstruct(x)),
        "component_mse": per,
    }
