"""Datasets and task specs for lifelong generative models.

    load_task("digits:classes=0-4:invert", split="train", seed=0) -> TaskData
    parse_tasks("digits:classes=0-4,digits:classes=5-9,glyphs") -> normalised spec strings
    image_shape("glyphs:size=32:rgb") -> (3, 32, 32)
    datasets() -> one dict per dataset name, for menus and docs

Embedded: digits (scikit-learn, real), glyphs (font renders), shapes (dSprites-like, with
factors). From the user's IDX files: mnist, fashion, kmnist. See `registry` for the options.

    data_roots() -> the folders the app may read datasets from (roots.py)
    check_roots("mnist:path=DIR,digits") -> None, or DataError when a path is outside them
"""

from . import catalog  # noqa: F401  (registers the datasets)
from .base import DataError, TaskData, join_tasks
from .registry import datasets, image_shape, load_task, parse_tasks
from .roots import check_roots, data_roots

__all__ = [
    "DataError",
    "TaskData",
    "check_roots",
    "data_roots",
    "join_tasks",
    "datasets",
    "image_shape",
    "load_task",
    "parse_tasks",
]
