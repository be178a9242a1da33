"""The Latent map: 2-D projections (PCA, t-SNE, UMAP) of latent codes of a fixed sample.

A default map (PCA of the routed codes of up to MAP_POINTS test images) is computed when a
snapshot is written and stored beside it (`map-XX.safetensors`), so the page's first paint
reads it and fits nothing. Other spaces (one expert's codes for every image, paper 002 Figs.
11, 13; one block such as CPVAE's shared or private codes, paper 004 Fig. 3) and other
methods are computed on request, off the page's script thread (ui.py).
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


def compute(run_path, after_task: int, space: str, method: str, tests: list, n_points=MAP_POINTS):
    """A map computed from scratch for a run's snapshot: the default sample of `tests` (the
    page's test data: the datasets or the run's stored evaluation images), its codes in
    `space`, projected by `method`. Loads its own model (it runs in a worker thread, apart
    from the page's objects). Returns the same fields a stored map has."""
    from lifelong.runs import open_run

    torch.set_num_threads(1)
    run = open_run(run_path)
    model = run.load_model(after_task)
    points = sample(tests, n_points)
    codes, expert = encode(model, images_of(tests, points), space)
    xy = project(codes, method, run.manifest.get("seed", 0))
    return {**points, "xy": torch.from_numpy(xy), "expert": torch.from_numpy(expert)}


def restrict(points: dict, tests: list) -> dict | None:
    """A stored map's points that `tests` hold, their indexes made positions in `tests`.

    A stored map indexes each task's full test split. Where a task's data is the run's
    stored sample (evaldata.StoredTask: `index` = positions in the full split), only the
    points among its images are kept; points of a foreign run that fall outside the data
    are dropped, so a click never indexes past it. None if the stored map is malformed or
    no point is left (the page then computes one)."""
    keys = ("task", "index", "label", "xy", "expert")
    if not all(k in points for k in keys):
        return None
    n = len(points["task"])
    if any(len(points[k]) != n for k in keys) or points["xy"].shape[1:] != (2,):
        return None
    task, index = points["task"].long(), points["index"].long().clone()
    keep = torch.zeros(n, dtype=torch.bool)
    for j, data in enumerate(tests):
        sel = task == j
        full = getattr(data, "index", None)  # a stored sample's positions, sorted
        if full is None:
            keep |= sel & (index >= 0) & (index < len(data))
            continue
        pos = torch.searchsorted(full, index).clamp(max=len(full) - 1)
        found = sel & (full[pos] == index)
        keep |= found
        index = torch.where(found, pos, index)
    if not bool(keep.any()):
        return None
    out = {k: points[k][keep] for k in keys}
    out["index"] = index[keep]
    return out


def table(points: dict, tests: list) -> list[dict]:
    """One row per point (for the CSV download): coordinates, task, index, class, expert."""
    rows = []
    for i in range(len(points["xy"])):
        t, idx = int(points["task"][i]), int(points["index"][i])
        classes = tests[t].classes
        label = int(points["label"][i])
        rows.append(
            {
                "x": float(points["xy"][i, 0]),
                "y": float(points["xy"][i, 1]),
                "task": t,
                "index": idx,
                "class": classes[label] if label < len(classes) else str(label),
                "expert": int(points["expert"][i]),
            }
        )
    return rows


@torch.no_grad()
def point_images(model, tests: list, points: dict, i: int) -> torch.Tensor:
    """[2, C, H, W]: point i's input and its decoding (through the expert it was mapped with)."""
    t, idx, expert = int(points["task"][i]), int(points["index"][i]), int(points["expert"][i])
    x = tests[t].x[idx : idx + 1].to(model.device)
    recon = model.reconstruct(x, expert=expert) if expert >= 0 else model.reconstruct(x)
    return torch.cat([x, recon]).cpu()


def warm_up_umap() -> float:
    """Import umap-learn and fit a tiny map, so numba compiles its kernels now (about 30 s
    on 2 CPU cores the first time; its on-disk cache makes later processes faster) rather
    than when a user asks for UMAP. Returns the seconds spent; 0 without umap-learn."""
    import time

    t0 = time.perf_counter()
    try:
        import umap  # noqa: F401
    except ImportError:
        return 0.0
    project(np.random.default_rng(0).normal(size=(64, 4)), "UMAP")
    return time.perf_counter() - t0
