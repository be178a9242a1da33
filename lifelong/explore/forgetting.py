"""The Forgetting page's computations: a "time machine" over snapshots.

For a chosen snapshot k, every task's test images, their reconstructions and samples generated
for that task by the model as it was after task k, so a user can step k forward and watch
what a model keeps and what it loses; the same rows from a baseline run over the same tasks
sit beside them. Samples use a fixed seed, so two snapshots differ only by their weights.
"""

from __future__ import annotations

import csv
import io

import torch

from lifelong.explore import images, overview, summary


@torch.no_grad()
def snapshot_rows(model, tests: list, after_task: int, n: int = 8, seed: int = 0) -> list[dict]:
    """One dict per task j: x, recon [n, C, H, W] (through the routed expert for mixtures),
    samples [n, C, H, W] generated for task j (its holding expert, or the family's own
    task-conditioned sampling), and seen = j <= after_task (later tasks: forward transfer)."""
    rows = overview.task_reconstructions(model, tests, n)
    for row in rows:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + row["task"])
            if model.capabilities.sampling:
                row["samples"] = model.sample(n, task=row["task"]).cpu()
            else:  # a family that does not generate: the row shows inputs and reconstructions
                row["samples"] = row["x"][:0]
        row["seen"] = row["task"] <= after_task
    return rows


def row_grid(row: dict, scale: int = 2):
    """A snapshot row as one RGB image: inputs, reconstructions and samples, one line each."""
    n = len(row["x"])
    return images.grid(torch.cat([row["x"], row["recon"], row["samples"]]), n, scale=scale)


def replayed(model) -> dict[int, torch.Tensor]:
    """Samples a generative-replay family recorded per task (LGM, InfoGAN): task -> images.
    Empty for families without replay."""
    return dict(model.replayed_samples()) if model.capabilities.replay else {}


def comparable(run, candidates: dict) -> dict:
    """The candidate runs (label -> Run) trained on the same task sequence as `run`, itself
    excluded: the baselines that can stand beside it."""
    return {
        label: other
        for label, other in candidates.items()
        if other.tasks == run.tasks and other.path != run.path
    }


def matrix_csv(run, name: str) -> str:
    """The forgetting matrix `name` as CSV: a row per snapshot, a column per task."""
    z, xs, ys = overview.matrix_labels(run, name)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["snapshot", *xs])
    for label, row in zip(ys, z, strict=False):
        w.writerow([label, *["" if v is None else repr(v) for v in row]])
    return buf.getvalue()


def stored_metrics(run) -> list[str]:
    """Names of the forgetting matrices the run holds (training metrics, then stored eval)."""
    return summary.matrix_names(run)
