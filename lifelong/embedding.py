"""Latent codes of a fixed sample of test images and their 2-D projections (PCA, t-SNE, UMAP).

Below train and explore (tests/test_layers.py): the trainer stores a default map beside each
snapshot (PCA of the routed codes of up to MAP_POINTS test images, `map-XX.safetensors`) and
the Latent map page (lifelong/explore/latentmap.py) reads it or computes other spaces and
methods with the same functions.

The time-lapse (lifelong/explore/timelapse.py) and the latent drift (metrics.drift, `eval
--metrics drift`) read the codes of every test image at every snapshot (`codes_of`) and fit
one projection for all of them (`fit_over_snapshots`), so a point moves only when its code
does.
"""

from __future__ import annotations

import numpy as np
import torch

MAP_POINTS = 5000
METHODS = ["PCA", "t-SNE", "UMAP"]
# The space of the latent drift and of the stored time-lapse for mixtures: each task's images
# through the expert that holds the task (L-MVAE: the one frozen for it), else through the
# expert most of them are routed to. A non-mixture has one space ("routed": its encoder).
TASK_EXPERT = "task expert"
FIT_POINTS = 10_000  # t-SNE / UMAP fit on at most this many codes; the rest are placed in


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


def every_point(tests: list, per_task: int | None = None) -> dict[str, torch.Tensor]:
    """Every image of every task (the first `per_task` of each if given), in task order:
    {"task", "index", "label"} [N] each, index = position in that task's data."""
    task, index, label = [], [], []
    for j, data in enumerate(tests):
        n = len(data) if per_task is None else min(per_task, len(data))
        task.append(torch.full((n,), j))
        index.append(torch.arange(n))
        label.append(data.y[:n])
    return {"task": torch.cat(task), "index": torch.cat(index), "label": torch.cat(label)}


def images_of(tests: list, points: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sample's images [N, C, H, W], in the sample's order."""
    out = []
    for j, data in enumerate(tests):
        out.append(data.x[points["index"][points["task"] == j]])
    return torch.cat(out)


def spaces(model) -> list[str]:
    """Latent spaces a map can show: for mixtures first TASK_EXPERT (each task's images
    through the expert holding the task: the drift's space), "routed" (each image through
    the expert eq. 7 selects; the single space of a non-mixture), "expert k" (every image
    through expert k), and "block NAME" for families with several Gaussian blocks (CPVAE's
    shared and private)."""
    out = [TASK_EXPERT] if model.experts() else []
    out += ["routed"] + [f"expert {k}" for k in model.experts()]
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


def drift_space(model) -> str:
    """The space the latent drift is measured in: TASK_EXPERT for mixtures, else "routed"."""
    return TASK_EXPERT if model.experts() else "routed"


@torch.no_grad()
def task_expert(model, task: int, x: torch.Tensor) -> int:
    """The expert holding `task` (model.task_experts()), else the one most of x (up to 512
    of its images) is routed to by eq. 7."""
    holders = model.task_experts()
    if task < len(holders) and holders[task] >= 0:
        return int(holders[task])
    return int(torch.mode(model.select(x[:512].to(model.device))).values)


def codes_of(model, tests: list, points: dict, space: str = "routed", batch: int = 512):
    """Codes of the images `points` names (task, index into tests[task]) in `space`: as
    `encode`, plus TASK_EXPERT (each task's images through `task_expert`; "routed" for a
    non-mixture). Reads the images a batch at a time, so every image of a large split is
    never copied at once. Returns (codes [N, d] float32, expert [N] int), in points order."""
    task = points["task"].long()
    index = points["index"].long()
    codes, expert = None, np.full(len(task), -1, dtype=np.int64)
    for j, data in enumerate(tests):
        rows = torch.nonzero(task == j).flatten()
        if not len(rows):
            continue
        idx = index[rows]
        where = "routed" if space == TASK_EXPERT else space
        if space == TASK_EXPERT and model.experts():
            where = f"expert {task_expert(model, j, data.x[idx[:512]])}"
        for i in range(0, len(idx), batch):
            c, e = encode(model, data.x[idx[i : i + batch]], where, batch)
            if codes is None:
                codes = np.zeros((len(task), c.shape[1]), dtype=np.float32)
            part = rows[i : i + batch].numpy()
            codes[part], expert[part] = c, e
    return (np.zeros((0, 0), np.float32) if codes is None else codes), expert


def _pad(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Codes of several snapshots with as many columns each (zeros for dimensions a
    snapshot did not have yet)."""
    width = max(a.shape[1] for a in arrays)
    return [np.pad(np.asarray(a, np.float64), ((0, 0), (0, width - a.shape[1]))) for a in arrays]


def fit_over_snapshots(
    codes: list[np.ndarray], method: str = "PCA", seed: int = 0, fit_points: int = FIT_POINTS
) -> np.ndarray:
    """One projection for every snapshot's codes of the same N images: [S][N, d] -> xy
    [S, N, 2] float32, so that a point moves between frames only where its code moved.

    PCA: fitted on the codes of all snapshots stacked (a few ms), so no snapshot's codes fall
    off the plane: the axes are the directions the codes vary most over the whole run,
    movement included. Signs are fixed (each axis' largest loading positive).
    t-SNE (openTSNE) and UMAP: fitted on the last snapshot's codes (the end state the user
    reads; at most `fit_points` of them, the rest placed in), and every other code is
    placed into that map by the fitted model's `transform`, never refitted. A code equal to
    the last snapshot's code of the same image keeps that image's position exactly, so
    frozen codes stand still; identical codes are placed once."""
    arrays = _pad(codes)
    if method == "PCA":
        stack = np.concatenate(arrays)
        mean = stack.mean(0)
        centred = stack - mean
        _, vecs = np.linalg.eigh(centred.T @ centred)
        axes = vecs[:, ::-1][:, :2]
        axes = axes * np.where(axes[np.abs(axes).argmax(0), range(axes.shape[1])] < 0, -1, 1)
        xy = np.stack([(a - mean) @ axes for a in arrays])
        if xy.shape[2] < 2:
            xy = np.pad(xy, ((0, 0), (0, 0), (0, 2 - xy.shape[2])))
        return xy.astype(np.float32)
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")
    ref = arrays[-1]
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.permutation(len(ref))[:fit_points])
    model = _fit_model(ref[fit_rows], method, seed)
    xy = np.zeros((len(arrays), len(ref), 2), dtype=np.float32)
    xy[-1, fit_rows] = model.embedding_xy
    todo = np.ones((len(arrays), len(ref)), dtype=bool)
    todo[-1, fit_rows] = False
    todo[:-1] &= ~(np.asarray(arrays[:-1]) == ref[None]).all(axis=2)  # unmoved: placed below
    pending = np.concatenate([a[t] for a, t in zip(arrays, todo, strict=True)])
    if len(pending):
        unique, inverse = np.unique(pending, axis=0, return_inverse=True)
        placed = model.transform(unique)[inverse.reshape(-1)]
        start = 0
        for k, t in enumerate(todo):
            xy[k, t] = placed[start : start + t.sum()]
            start += t.sum()
    for k in range(len(arrays) - 1):
        same = ~todo[k]
        xy[k, same] = xy[-1, same]
    return xy


class _Fitted:
    """A fitted t-SNE / UMAP model: `embedding_xy` of its fit set, `transform(codes)`."""

    def __init__(self, embedding_xy, transform):
        self.embedding_xy = np.asarray(embedding_xy, dtype=np.float32)
        self._transform = transform

    def transform(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self._transform(codes), dtype=np.float32)


def _fit_model(codes: np.ndarray, method: str, seed: int) -> _Fitted:
    if method == "t-SNE":
        try:
            from openTSNE import TSNE
        except ImportError:
            raise ValueError(
                "a t-SNE time-lapse needs the openTSNE package, which places new codes into a "
                "fitted map (pip install openTSNE)"
            ) from None
        perplexity = min(30.0, max(2.0, (len(codes) - 1) / 3))
        emb = TSNE(perplexity=perplexity, initialization="pca", random_state=seed, n_jobs=1).fit(
            codes
        )
        return _Fitted(np.asarray(emb), lambda c: emb.transform(c))
    try:
        import umap
    except ImportError:
        raise ValueError("UMAP needs the umap-learn package (pip install umap-learn)") from None
    neighbours = int(min(15, len(codes) - 1))
    fit = umap.UMAP(
        n_neighbors=neighbours,
        random_state=seed,
        force_approximation_algorithm=len(codes) < 4096,
    ).fit(codes)
    return _Fitted(fit.embedding_, fit.transform)


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


def compact_xy(xy: torch.Tensor) -> torch.Tensor:
    """Projected coordinates as stored: float16 (a plot's resolution, half the bytes), or
    float32 where a coordinate is beyond float16's range."""
    xy = xy.float().contiguous()
    return xy.half() if bool((xy.abs() < 6e4).all()) else xy


def stored_map(points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A default map as the trainer stores it beside a snapshot (map-NN.safetensors): task,
    index, label int32 [N], expert int16 [N], xy float16 [N, 2] (compact_xy), under half the
    bytes of the int64 / float32 map; readers cast (latentmap.restrict and the page)."""
    return {
        "task": points["task"].int(),
        "index": points["index"].int(),
        "label": points["label"].int(),
        "expert": points["expert"].short(),
        "xy": compact_xy(points["xy"]),
    }


def default_map(model, tests: list, n_points: int = MAP_POINTS) -> dict[str, torch.Tensor]:
    """What a run stores beside each snapshot: the sample and the PCA of its routed codes."""
    points = sample(tests, n_points)
    codes, expert = encode(model, images_of(tests, points))
    xy = project(codes, "PCA")
    return {**points, "xy": torch.from_numpy(xy), "expert": torch.from_numpy(expert)}
