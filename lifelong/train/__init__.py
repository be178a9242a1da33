"""Lifelong training: the trainer, its callbacks and per-task evaluation."""

from lifelong.train.callbacks import Callback, JSONLLog, Progress
from lifelong.train.evaluate import evaluate
from lifelong.train.trainer import (
    TrainArgs,
    TrainingError,
    build_config,
    parse_overrides,
    read_log,
    resolve_device,
    train,
)

__all__ = [
    "Callback",
    "JSONLLog",
    "Progress",
    "TrainArgs",
    "TrainingError",
    "build_config",
    "evaluate",
    "parse_overrides",
    "read_log",
    "resolve_device",
    "train",
]
