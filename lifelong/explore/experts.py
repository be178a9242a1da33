"""The Compare experts page's computations: one input through every expert of a mixture.

Paper 000 routes each input to one expert (eq. 7); paper 002 decodes through every component
and through mismatched encoder/decoder pairs (Figs. 2-3, 7, 17). These functions give the
views the same inputs through each expert, the routed one marked with its score.
"""

from __future__ import annotations

import torch

from lifelong import evaldata, evaluation, runs


def _seeded_scores(model, x: torch.Tensor, seed: int) -> torch.Tensor:
    """[K, n] one-sample ELBOs (nats) per expert with fixed noise, so a page shows the same
    figures on every rerun and experts are compared on the same draw."""
    return evaluation.seeded_expert_scores(model, x, seed)


@torch.no_grad()
def through_every_expert(model, x: torch.Tensor, seed: int = 0) -> dict:
    """x [n, C, H, W] -> {"experts": [K ids], "recon": [K, n, C, H, W], "score": [K, n] ELBO
    (nats) of each expert per input, "routed": [n] the expert eq. 7 selects}."""
    experts = model.experts()
    recon = torch.stack([model.reconstruct(x, expert=k) for k in experts])
    score = _seeded_scores(model, x, seed)
    routed = model.select(x)
    return {"experts": experts, "recon": recon.cpu(), "score": score.cpu(), "routed": routed.cpu()}


@torch.no_grad()
def expert_samples(model, n: int = 8, seed: int = 0) -> dict[int, torch.Tensor]:
    """n samples from each expert's prior and decoder (paper 002 Fig. 17): expert -> images."""
    out = {}
    for k in model.experts() if model.capabilities.sampling else []:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out[k] = model.sample(n, expert=k).cpu()
    return out


@torch.no_grad()
def mismatched(model, x: torch.Tensor) -> torch.Tensor:
    """x [1, C, H, W] -> [K, K, C, H, W]: row i encodes with expert i, column j decodes with
    expert j (paper 002 eq. 36, Figs. 3 and 7); the diagonal is each expert's own
    reconstruction. Experts must share one latent size.

    Each decoder reads the K posterior means [K, d] in one batch: K decoder calls instead of
    K^2 calls on one code (10 experts: 44 -> 22 ms), equal to decoding each code alone up to
    float rounding."""
    experts = model.experts()
    block = {b.owner: b.name for b in model.latent_blocks()}  # expert -> its latent block
    mus = torch.cat([model.encode(x[:1], i)[block[i]]["mu"] for i in experts])  # [K, d]
    columns = [model.decode({block[j]: mus}, j) for j in experts]  # K x [K, C, H, W]
    return torch.stack(columns, dim=1).cpu()


def scores_per_task(model, tests: list, n: int = 256, seed: int = 0) -> torch.Tensor:
    """[T, K] mean ELBO (nats) of each expert on each task's first n test images
    (evaluation.expert_elbo_per_task; the trainer stores it: stored_scores)."""
    return evaluation.expert_elbo_per_task(model, tests, n, seed)


TABLE = evaluation.EXPERT_TABLE


def stored_scores(run, snap: int, model, tests: list) -> torch.Tensor | None:
    """[T, K] the table the trainer stored beside snapshot `snap`
    (evaluation.expert_elbo_table): scores_per_task(model, tests) for the page's `tests`, each
    task's row from the images the page scores (the dataset's or the run's stored sample,
    evaldata.test_sets). None where the run has none (made before) or one a recomputation
    would not give (other experts, image count or seed; a damaged file): the page computes."""
    try:
        t = run.extra(TABLE, snap)
    except runs.RunError:
        return None
    if t is None:
        return None
    experts = model.experts()
    shape = (len(tests), len(experts))
    try:
        parts = [t["dataset"], t["sample"]]
        same = (
            t["experts"].tolist() == experts
            and t["n"].tolist() == [evaluation.SCORE_IMAGES]
            and t["seed"].tolist() == [evaluation.SCORE_SEED]
        )
    except (KeyError, RuntimeError, TypeError, ValueError):
        return None
    if not same or any(p.dtype != torch.float32 or tuple(p.shape) != shape for p in parts):
        return None
    rows = [
        parts[1][j] if isinstance(d, evaldata.StoredTask) else parts[0][j]
        for j, d in enumerate(tests)
    ]
    table = torch.stack(rows) if rows else parts[0]
    return table if bool(torch.isfinite(table).all()) else None
