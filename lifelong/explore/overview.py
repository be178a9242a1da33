"""The Overview page's computations: a row of reconstructions per task through its routed
expert (paper 000 Figs. 4-5), and the heatmap data of the forgetting matrix."""

from __future__ import annotations

from pathlib import Path

import torch

from lifelong.explore import images, summary


@torch.no_grad()
def task_reconstructions(model, tests: list, n: int = 8) -> list[dict]:
    """For each task's first `n` test images: originals, reconstructions through the expert
    selected per image (eq. 7), and which expert that was. Images as [n, C, H, W] tensors."""
    out = []
    for j, data in enumerate(tests):
        x = data.x[:n].to(model.device)
        recon, _, chosen = model.assess(x, score=False)  # L-MVAE: eq. 7 selects once
        holders = model.task_experts()
        out.append(
            {
                "task": j,
                "name": data.name,
                "x": x.cpu(),
                "recon": recon.cpu(),
                "experts": None if chosen is None else chosen.tolist(),
                "holder": holders[j] if j < len(holders) else None,
            }
        )
    return out


def pair_grid(x: torch.Tensor, recon: torch.Tensor, scale: int = 2):
    """Originals on the top row, reconstructions below: RGB uint8."""
    return images.grid(torch.cat([x, recon]), len(x), scale=scale)


def matrix_labels(run, name: str) -> tuple[list[list[float | None]], list[str], list[str]]:
    """The forgetting matrix padded to square with None, and its axis labels."""
    m = summary.matrix(run, name)
    t = len(run.tasks)
    rows = [list(r) + [None] * (t - len(r)) for r in m]
    return (
        rows,
        [f"{j}: {s}" for j, s in enumerate(run.tasks)],
        [f"after {k}" for k in run.snapshots[: len(m)]],
    )


def snapshot_preview(run_dir: str | Path, after_task: int, n: int = 6, scale: int = 1):
    """Originals over reconstructions of the first `n` test images of the task a snapshot
    was taken after: RGB uint8, for the Train page's thumbnail row (cache it by file)."""
    from lifelong import data as ldata
    from lifelong import runs

    run = runs.open_run(run_dir)
    model = run.load_model(after_task)
    test = ldata.load_task(run.tasks[after_task], "test", run.manifest.get("seed", 0))
    row = task_reconstructions(model, [test], n)[0]
    return pair_grid(row["x"], row["recon"], scale=scale)
