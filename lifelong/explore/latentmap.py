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

# The codes and projections live one layer down (the trainer stores a map too); re-exported
# here for the page.
from lifelong.embedding import (  # noqa: F401
    MAP_POINTS,
    METHODS,
    default_map,
    encode,
    images_of,
    project,
    sample,
    spaces,
)


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
