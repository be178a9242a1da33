"""Latent codes of a fixed sample of test images and their 2-D projections (PCA, t-SNE, UMAP).

Below train and explore (tests/test_layers.py): the trainer stores a default map beside each
snapshot (PCA of the routed codes of up to MAP_POINTS test images, `map-XX.safetensors`) and
the Latent map page (lifelong/explore/latentmap.py) reads it or computes other spaces and
methods with the same functions.
"""

from __future__ import annotations

import numpy as np
import torch

MAP_POINTS = 5000
METHODS = ["PCA", "t-SNE", "UMAP"]


def sample(tests: list, n_points: int = MAP_POINTS, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed sample of test images, evenly over tasks: {"task", "index", "label"} [N] each
    (index into that task's test set). Deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    per = max(1, n_points // max(1, len(tests)))
    task, index, label = [], [], []
    for j, data in enumerate(tests):
        idx = torch.randperm(len(data), generator=g)[:per].sort().values
        task.append(torch.full((len(idx),), j))
        index.append(idx)
        label.append(data.y[idx])
    return {"task": torch.cat(task), "index": torch.cat(index), "label": torch.cat(label)}


def images_of(tests: list, points: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sample's images [N, C, H, W], in the sample's order."""
    out = []
    for j, data in enumerate(tests):
        out.append(data.x[points["index"][points["task"] == j]])
    return torch.cat(out)


def spaces(model) -> list[str]:
    """Latent spaces a map can show: "routed" (each image through the expert eq. 7 selects;
    the single space of a non-mixture), "expert k" (every image through expert k), and
    "block NAME" for families with several Gaussian blocks (CPVAE's shared and private)."""
    out = ["routed"] + [f"expert {k}" for k in model.experts()]
    gauss = [b for b in model.latent_blocks() if b.kind == "gaussian"]
    if not model.experts() and len(gauss) > 1:
        out += [f"block {b.name}" for b in gauss]
    return out


@torch.no_grad()
def encode(model, x: torch.Tensor, space: str = "routed", batch: int = 512):
    """x [N, C, H, W] -> (codes [N, d] float32 numpy, expert [N] int numpy, -1 for none)."""
    codes, experts = [], []
    gauss = [b.name for b in model.latent_blocks() if b.kind == "gaussian"]
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(model.device)
        if space.startswith("expert "):
            k = int(space.split()[1])
            post = model.encode(xb, k)
            mu = torch.cat([p["mu"] for p in post.values() if "mu" in p], dim=1)
            who = torch.full((len(xb),), k)
        elif model.experts():
            who = model.select(xb)
            mu = None
            for k in who.unique().tolist():
                rows = who == k
                post = model.encode(xb[rows], k)
                part = torch.cat([p["mu"] for p in post.values() if "mu" in p], dim=1)
                mu = part.new_zeros(len(xb), part.shape[1]) if mu is None else mu
                mu[rows] = part
        else:
            post = model.encode(xb)
            names = [space.split()[1]] if space.startswith("block ") else gauss
            mu = torch.cat([post[n]["mu"] for n in names], dim=1)
            who = torch.full((len(xb),), -1)
        codes.append(mu.float().cpu())
        experts.append(who.cpu())
    return torch.cat(codes).numpy(), torch.cat(experts).numpy()


def project(codes: np.ndarray, method: str = "PCA", seed: int = 0) -> np.ndarray:
    """codes [N, d] -> [N, 2]. PCA by SVD of the centred codes (d = 1 pads a zero axis);
    t-SNE by scikit-learn (PCA init, perplexity 30); UMAP by umap-learn when installed."""
    codes = np.asarray(codes, dtype=np.float64)
    if method == "PCA":
        centred = codes - codes.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(codes) - 1) / 3))
        return (
            TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
            .fit_transform(codes)
            .astype(np.float32)
        )
    if method == "UMAP":
        try:
            import umap
        except ImportError:
            raise ValueError("UMAP needs the umap-learn package (pip install umap-learn)") from None
        neighbours = int(min(15, len(codes) - 1))
        fit = umap.UMAP(n_neighbors=neighbours, random_state=seed).fit_transform(codes)
        return fit.astype(np.float32)
    raise ValueError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")


def default_map(model, tests: list, n_points: int = MAP_POINTS) -> dict[str, torch.Tensor]:
    """What a run stores beside each snapshot: the sample and the PCA of its routed codes."""
    points = sample(tests, n_points)
    codes, expert = encode(model, images_of(tests, points))
    xy = project(codes, "PCA")
    return {**points, "xy": torch.from_numpy(xy), "expert": torch.from_numpy(expert)}
