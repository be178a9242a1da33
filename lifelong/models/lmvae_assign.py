"""L-MVAE's task-boundary choices (paper 000): the assignment step (eqs. 3-5), which expert
becomes the depository of a finished task and is frozen for good, and L-MVAE-Dyn's novelty
distance (eq. 24). Pure functions; lmvae.py calls them at task boundaries.

Two readings of when eq. 3 is evaluated, and on which data (LMVAEConfig.assign_on):

- "finished" (the default): Alg. 1 l. 11-14. Eq. 3 is evaluated after a task's epochs, on
  batches of that task's data, with L_VAE the ELBO as eq. 1 defines it. exp(-L_j) is then
  smallest for the expert that fits the finished task best, so p(c_j) = 1 - its share is
  largest there and eq. 4 freezes the free expert that fits the finished task best: the one
  that learnt it, and the one eq. 7 routes its test images to.
- "incoming": the text of Sec. III-C ("The sampling of mixing weights": after the t-th task,
  "several batches of samples from the (t + 1)-th task" are used to evaluate eq. 3), with L
  read as the loss (-ELBO), so that eq. 4 freezes the free expert that fits the *incoming*
  task worst, keeping the nearest one free to learn it (the fast transfer of Sec. VII-G).
  This was the only reading before the option existed; runs made then used it.

Both average eq. 3 over batches (Sec. III-C: p(c_j) = sum_i p(c_j^i) / N) in log space
(losses.assignment_probabilities: exp(-L) under- or overflows for hundreds of nats).
Measurements of the two: docs/readings.md.
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong import losses

READINGS = ("finished", "incoming")


def check_choice(name: str, value, options) -> None:
    """A one-line ValueError naming the field unless value is one of options, e.g. "assign_on
    must be 'finished' or 'incoming', not 'both'"."""
    if value not in options:
        listed = ", ".join(repr(o) for o in options[:-1]) + f" or {options[-1]!r}"
        raise ValueError(f"{name} must be {listed}, not {value!r}")


def check_reading(reading: str) -> str:
    """`reading` if it is one of READINGS, else a one-line ValueError."""
    check_choice("assign_on", reading, READINGS)
    return reading


def task_batches(x: torch.Tensor, task: int, batch_size: int, n_batches: int) -> list:
    """Fixed batches of a task's images x [N, C, H, W] for eq. 3: up to n_batches of
    batch_size, drawn by a permutation seeded by the task (a resumed run evaluates the same
    images). A task with fewer than n_batches * batch_size images gives fewer batches, the last
    one possibly smaller, never an empty one: an empty batch's mean ELBO was NaN, every q_j of
    eq. 3 with it, and eq. 4 then froze the first free expert whatever the fit."""
    if len(x) == 0:
        raise ValueError(f"task {task} has no images to evaluate eq. 3 on")
    g = torch.Generator().manual_seed(1000 + task)
    perm = torch.randperm(len(x), generator=g)[: batch_size * n_batches]
    return [x[idx] for idx in perm.split(batch_size)]


def eq3(elbo: torch.Tensor, assigned: torch.Tensor, u: float, reading: str):
    """Eq. 3 averaged over batches: elbo [B, K] (mean ELBO of expert j on batch b, nats),
    assigned [K] bool (c'_j), u the large constant -> (p [K], log_q [K]), p(c_j) and the log
    of its complement q_j = 1 - p(c_j) (which ranks the experts exactly when p rounds to 1).
    "finished" reads L_VAE as the ELBO (eq. 1's definition), "incoming" as the loss -ELBO."""
    check_reading(reading)
    big_l = elbo if reading == "finished" else -elbo  # L_VAE^j(x_b) of eq. 3
    return losses.assignment_probabilities(big_l.double(), assigned, u)


def choose(log_q: torch.Tensor, assigned: torch.Tensor) -> int:
    """Eq. 4: j* = argmax_j p(c_j) = argmin_j q_j over the experts holding no task yet (log_q,
    assigned: [K]). Eq. 3's u c'_j is there to keep a holder out of the choice, but exp(-L) of
    hundreds of nats dwarfs any u, so holders are excluded exactly instead."""
    if bool(assigned.all()):
        raise RuntimeError("no free expert left for the new task")
    return int(log_q.masked_fill(assigned, float("inf")).argmin())


def freeze_module(module: nn.Module, frozen: bool) -> None:
    """requires_grad off and stale gradients dropped, so nothing can step these weights (what
    freezing an expert means for its parameters; the trainer's optimizer also leaves them)."""
    for p in module.parameters():
        p.requires_grad_(not frozen)
        if frozen:
            p.grad = None


def freeze(assigned: torch.Tensor, j: int) -> torch.Tensor:
    """Eq. 5: c_j* = 1 and every other c_i keeps its previous value c'_i: [K] bool -> [K]."""
    out = assigned.clone()
    out[j] = True
    return out


def novelty_distances(x: torch.Tensor, recs: list, metric: str) -> torch.Tensor:
    """Eq. 24 for each expert k: the mean L2 distance between x_i and f_k(x_l), x [N, ...] and
    recs: K reconstructions f_k(x) [N, ...] -> [K].

    As printed, eq. 24 averages over all pairs (i, l) ("pairs"). That average is dominated by
    how spread out the task's own data is: on bar images an expert trained on the very same task
    scored farther (9.3) than on a novel task (8.1), so no S* separates them. The default
    "matched" reading keeps the i = l terms, the distance between each sample and the expert's
    reconstruction of it, which is what the criterion asks ("can expert k generate data like
    X_j"): 1.4 for the repeated task against 6.7 for the novel one.
    """
    flat = x.flatten(1)
    if metric == "pairs":
        return torch.stack([torch.cdist(flat, r.flatten(1)).mean() for r in recs])
    return torch.stack([(flat - r.flatten(1)).norm(dim=1).mean() for r in recs])
