"""The Latent map: 2-D projections (PCA, t-SNE, UMAP) of latent codes.

A default map (PCA of the routed codes of up to MAP_POINTS test images) is computed when a
snapshot is written and stored beside it (`map-XX.safetensors`); the page shows it while the
time-lapse over every snapshot (lifelong/explore/timelapse.py) is computed, unless the run
stores one. Spaces: each task's expert, the routed expert, one expert's codes for every
image (paper 002 Figs. 11, 13), one block such as CPVAE's shared or private codes (paper 004
Fig. 3).
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
    keep, index = locate(points["task"].long(), points["index"].long(), tests)
    if not bool(keep.any()):
        return None
    out = {k: points[k][keep] for k in keys}
    out["index"] = index[keep]
    return out


def locate(task: torch.Tensor, index: torch.Tensor, tests: list):
    """(keep [N] bool, index [N]): which stored points (task, index in the task's full test
    split) `tests` hold, and their positions in it. A stored sample (evaldata.StoredTask)
    holds the images its `index` names; other data holds positions 0..len-1."""
    index = index.clone()
    keep = torch.zeros(len(task), dtype=torch.bool)
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
    return keep, index


@torch.no_grad()
def point_images(model, tests: list, points: dict, i: int) -> torch.Tensor:
    """[2, C, H, W]: point i's input and its decoding (through the expert it was mapped with)."""
    t, idx, expert = int(points["task"][i]), int(points["index"][i]), int(points["expert"][i])
    x = tests[t].x[idx : idx + 1].to(model.device)
    recon = model.reconstruct(x, expert=expert) if expert >= 0 else model.reconstruct(x)
    return torch.cat([x, recon]).cpu()


def warm_up_umap(delay: float = 3.0) -> float:
    """Import umap-learn and fit a tiny map, so numba compiles its kernels now (about 30 s
    on 2 CPU cores the first time; its on-disk cache makes later processes faster) rather
    than when a user asks for UMAP. Called in a thread of its own (the app's), it waits
    `delay` seconds and runs at the lowest CPU priority (Linux: that thread alone), so the
    page it warms up for paints first. Returns the seconds spent; 0 without umap-learn."""
    import os
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        time.sleep(delay)
        try:  # a thread is a task of its own on Linux: nice it, not the server
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
    t0 = time.perf_counter()
    try:
        import umap  # noqa: F401
    except ImportError:
        return 0.0
    project(np.random.default_rng(0).normal(size=(64, 4)), "UMAP")
    return time.perf_counter() - t0
