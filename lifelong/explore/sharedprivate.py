"""The Shared / private view's computations: what CPVAE puts in its shared and private codes.

CPVAE (paper 004, lifelong/models/cpvae.py) gives every input a shared code z and, per
population k (a task of the run), a private code t_k, decoded additively: g = f_s(z) + f_k(t_k)
in logit space. This module lays out the paper's evidence for one run:

- Fig. 2: originals, full reconstructions, shared-only f_s(z) and private-only f_k(t_k);
- Fig. 4: each input's shared code and private code decoded through every population's private
  decoder in turn (and the shared decoder alone);
- swapped shared codes: input A's private content over input B's shared code and vice versa;
- Table 1: k-means ARI of the shared and private codes against the population, the class, and
  the class within each population (subgroup discovery); the population accuracy of eqs. 7-8.

The model does the decoding (reconstruct_parts, decode_cross, swap_shared, classify); here are
the choice of inputs, the image grids and the table.
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong import metrics
from lifelong.explore import images

SCALE = 2  # grid tiles upscaled for display
ARI_COLUMNS = ["population", "class", "class within population"]
ARI_ROWS = ["shared z", "private t"]


def applies(model) -> bool:
    """Whether the model has CPVAE's shared and private codes (the view's capability)."""
    return model.capabilities.populations


def learnt(model) -> list[int]:
    """Populations learnt by this snapshot (all before any is: the model's own convention)."""
    seen = model.seen.nonzero().flatten().tolist()
    return seen or model.populations()


def pick(tests: list, population: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n, C, H, W], class labels [n]): n test inputs of one population, reproducibly."""
    data = tests[population]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:n]
    return data.x[idx], data.y[idx]


def _populations(model, x: torch.Tensor, population: int, classify: bool, seed: int):
    """[n] long: the known population, or the one eqs. 7-8 pick (seeded importance samples)."""
    if not classify:
        return torch.full((len(x),), population, dtype=torch.long, device=x.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.classify(x)


def _grid(rows: list[torch.Tensor], ncol: int) -> np.ndarray:
    return images.grid(torch.cat([r.cpu() for r in rows]), ncol, scale=SCALE)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, pop: torch.Tensor) -> dict:
    """Fig. 2: {"rows": [original, full, shared, private] [n, C, H, W] each, "grid"}."""
    parts = model.reconstruct_parts(x, pop)
    rows = [x, parts["full"], parts["shared"], parts["private"]]
    return {"rows": rows, "grid": _grid(rows, len(x))}


@torch.no_grad()
def through_populations(model, x: torch.Tensor, pop: torch.Tensor) -> dict:
    """Fig. 4: each input's z and its own private code t (pop's head) decoded through every
    population j's private decoder: {"targets": [j ...], "rows": [original, through j ...,
    shared only], "grid"}."""
    targets = model.populations()
    rows = [x] + [model.decode_cross(x, pop, j) for j in targets]
    rows.append(model.reconstruct_parts(x, pop)["shared"])
    return {"targets": targets, "rows": rows, "grid": _grid(rows, len(x))}


@torch.no_grad()
def swap(model, x_a, x_b, pop_a: torch.Tensor, pop_b: torch.Tensor) -> dict:
    """Swapped shared codes: rows [A, B, A's private over B's shared, B's private over A's
    shared] (each private part through its own population's decoder), and the grid."""
    a_on_b, b_on_a = model.swap_shared(x_a, x_b, pop_a, pop_b)
    rows = [x_a, x_b, a_on_b, b_on_a]
    return {"rows": rows, "grid": _grid(rows, len(x_a))}


def view(
    model,
    tests: list,
    population: int,
    other: int,
    n: int = 8,
    seed: int = 0,
    classify: bool = False,
) -> dict:
    """Everything the page draws: n inputs of `population` (A) and n of `other` (B).

    classify=False decodes each input through its known population; True through the one
    eqs. 7-8 pick (as reconstruct() does). Returns {"population": A's populations used [n],
    "population_b", "classes", "classes_b", "fig2", "fig4", "swap"} (see the functions above).
    """
    dev = model.device
    x_a, y_a = pick(tests, population, n, seed)
    x_b, y_b = pick(tests, other, n, seed + 1)
    x_a, x_b = x_a.to(dev), x_b.to(dev)
    pop_a = _populations(model, x_a, population, classify, seed)
    pop_b = _populations(model, x_b, other, classify, seed + 1)
    return {
        "population": pop_a.tolist(),
        "population_b": pop_b.tolist(),
        "classes": y_a.tolist(),
        "classes_b": y_b.tolist(),
        "fig2": reconstructions(model, x_a, pop_a),
        "fig4": through_populations(model, x_a, pop_a),
        "swap": swap(model, x_a, x_b, pop_a, pop_b),
    }


@torch.no_grad()
def codes(model, x: torch.Tensor, population: torch.Tensor) -> dict[str, torch.Tensor]:
    """Posterior means: "z" [N, d_z], "t_all" every private head concatenated [N, K*d_t],
    "t_own" each input's own population's t_k [N, d_t]."""
    post = model.encode(x)
    ts = [post[f"t{k}"]["mu"] for k in model.populations()]
    own = torch.stack(ts, 1)[torch.arange(len(x), device=x.device), population.to(x.device)]
    return {"z": post["z"]["mu"].cpu(), "t_all": torch.cat(ts, 1).cpu(), "t_own": own.cpu()}


def scores(model, tests: list, n: int = 200, seed: int = 0, samples: int | None = None) -> dict:
    """Table 1 and eqs. 7-8 on up to n test inputs of every learnt population.

    ARI (lifelong.metrics.kmeans_ari, k = number of labels) of k-means on the shared codes z
    and on the private codes against the population and the class over all inputs, and
    against the class within each population (mean over populations; Table 1's subgroup
    discovery). Private codes: every private head's mean concatenated [t_0, ..., t_K-1] for the
    first two columns (the whole private space of an input), the input's own population's t_k
    for the last. Returns {"rows", "columns", "ari" [2][3] (NaN where undefined),
    "within" {population: [shared, private]}, "accuracy" (eqs. 7-8, all inputs),
    "per_population" {population: accuracy}, "n"}. `samples`: eq. 8's importance samples
    (None: the model's default).
    """
    pops = learnt(model)
    xs, ys, ps = [], [], []
    for k in pops:
        x, y = pick(tests, k, n, seed)
        xs.append(x)
        ys.append(y)
        ps.append(torch.full((len(x),), k, dtype=torch.long))
    x = torch.cat(xs).to(model.device)
    y, p = torch.cat(ys).numpy(), torch.cat(ps)
    c = codes(model, x, p)
    within = {}
    for k in pops:
        rows = (p == k).numpy()
        within[k] = [
            metrics.kmeans_ari(c["z"][rows], y[rows], seed=seed),
            metrics.kmeans_ari(c["t_own"][rows], y[rows], seed=seed),
        ]
    mean_within = [_mean([w[i] for w in within.values()]) for i in range(2)]
    ari = [
        [metrics.kmeans_ari(c[key], p.numpy(), seed=seed), metrics.kmeans_ari(c[key], y, seed=seed)]
        for key in ("z", "t_all")
    ]
    ari = [row + [mean_within[i]] for i, row in enumerate(ari)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        guess = model.classify(x, samples).cpu()
    right = (guess == p).numpy()
    return {
        "rows": ARI_ROWS,
        "columns": ARI_COLUMNS,
        "ari": ari,
        "within": within,
        "accuracy": float(right.mean()),
        "per_population": {k: float(right[(p == k).numpy()].mean()) for k in pops},
        "n": len(x),
    }


@torch.no_grad()
def baseline_ari(baseline, tests: list, populations: list[int], n: int = 200, seed: int = 0):
    """Table 1's plain-VAE row: k-means ARI of `baseline`'s codes (a single-latent model over
    the same tasks, e.g. `vae-grassy` beside `cpvae-grassy`) on the very inputs `scores`
    clusters, against [population, class, class within population (mean)]."""
    from lifelong import evaluation

    xs, ys, ps = [], [], []
    for k in populations:
        x, y = pick(tests, k, n, seed)
        xs, ys, ps = xs + [x], ys + [y], ps + [np.full(len(x), k)]
    z = evaluation.codes(baseline, torch.cat(xs))
    y, p = torch.cat(ys).numpy(), np.concatenate(ps)
    within = [metrics.kmeans_ari(z[p == k], y[p == k], seed=seed) for k in populations]
    return [
        metrics.kmeans_ari(z, p, seed=seed),
        metrics.kmeans_ari(z, y, seed=seed),
        _mean(within),
    ]


def _mean(values: list[float]) -> float:
    """Mean of the defined (non-NaN) values; NaN if none is."""
    ok = [v for v in values if not np.isnan(v)]
    return float(np.mean(ok)) if ok else float("nan")


def ari_csv(table: dict) -> str:
    """The ARI table as CSV: one row per code, one column per label set."""
    lines = ["code," + ",".join(table["columns"])]
    for name, row in zip(table["rows"], table["ari"], strict=True):
        lines.append(name + "," + ",".join(f"{v:.6g}" for v in row))
    return "\n".join(lines) + "\n"
