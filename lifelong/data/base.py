"""Core data types shared by every dataset module: the error type and the task container.

Kept in its own module so the generators (`embedded`, `glyphs`, `idx`) and the `registry` can
all import them without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DataError(ValueError):
    """A bad dataset spec, option or file. The message is one line and, for unknown names or
    options, lists the valid ones, so it can be shown to a user as is."""


@dataclass
class TaskData:
    """One task's images and labels, ready for training.

    x: float32 [N, C, H, W] in [0, 1] (default C=1, H=W=28).
    y: int64 [N], index into `classes`. Class subsets keep the original indices.
    classes: all class names of the dataset (not only those present after `classes=`).
    factors: float32 [N, F] ground-truth generative factors (shapes only), else None.
    factor_names: the F factor names, e.g. ["shape", "scale", "orientation", "x", "y"].
    task: int64 [N] index of the task each image belongs to, when several tasks are trained
        together (joint phases, CPVAE populations); None for a single task.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    factors: torch.Tensor | None = None
    factor_names: list[str] | None = None
    task: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def join_tasks(parts: list[TaskData], indices: list[int]) -> TaskData:
    """Several tasks as one training set, each image tagged with its task index in `task`.

    Images must share a shape; labels keep each dataset's own class indices (`classes` is the
    first task's list, as labels of different datasets do not share a vocabulary).
    """
    if len(parts) == 1:
        only = parts[0]
        return TaskData(
            only.name,
            only.x,
            only.y,
            only.classes,
            only.factors,
            only.factor_names,
            torch.full((len(only),), indices[0], dtype=torch.long),
        )
    return TaskData(
        name="+".join(p.name for p in parts),
        x=torch.cat([p.x for p in parts]),
        y=torch.cat([p.y for p in parts]),
        classes=parts[0].classes,
        task=torch.cat(
            [
                torch.full((len(p),), i, dtype=torch.long)
                for p, i in zip(parts, indices, strict=True)
            ]
        ),
    )
