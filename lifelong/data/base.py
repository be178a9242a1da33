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
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    factors: torch.Tensor | None = None
    factor_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])
