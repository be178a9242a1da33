"""Shared fixtures: tiny seeded synthetic tasks so model tests need no dataset generation, and
one tiny trained run (a real CLI run) that the app and browser tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lifelong.train import Callback

torch.set_flush_denormal(True)
torch.set_num_threads(2)


@dataclass
class Task:
    x: torch.Tensor
    y: torch.Tensor
    name: str = "synthetic"

    def __len__(self) -> int:
        return len(self.x)


def synthetic_task(kind: str, n: int = 256, seed: int = 0) -> Task:
    """Distinct 28x28 domains: 'hbar' horizontal bars, 'vbar' vertical bars, 'blob' squares."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    pos = torch.randint(4, 22, (n,), generator=g)
    for i, p in enumerate(pos.tolist()):
        if kind == "hbar":
            x[i, 0, p : p + 3, 4:24] = 1.0
        elif kind == "vbar":
            x[i, 0, 4:24, p : p + 3] = 1.0
        else:
            x[i, 0, p - 3 : p + 3, p - 3 : p + 3] = 1.0
    return Task(x, torch.zeros(n, dtype=torch.long), kind)


@pytest.fixture
def tasks():
    return [synthetic_task(k, seed=i) for i, k in enumerate(["hbar", "vbar", "blob"])]


def fashion_or_skip(specs: list[str]) -> list[str]:
    """The specs, or a skip where Fashion-MNIST is not installed (the slow claim tests' real-data
    cases: apt-get install dataset-fashion-mnist, which .ci/run does)."""
    from lifelong.data import DataError, load_task

    try:
        load_task(specs[0], "test")
    except DataError as exc:
        pytest.skip(f"real-data case: {exc}")
    return specs


TINY_NETS = {"latent_dim": 2, "hidden": 16, "channels": 4}
TINY_TASKS = ["digits:classes=0-1", "digits:classes=2-3"]


def tiny_args(out, **kw):
    """TrainArgs of a tiny two-task L-MVAE run on the CPU (digits 0-1 | 2-3, 1 epoch, batch
    64, 1 thread, 32 evaluation samples); keyword arguments replace fields (`overrides`
    replaces the tiny network sizes as a whole)."""
    from lifelong.train import TrainArgs

    base = dict(
        model="lmvae",
        tasks=list(TINY_TASKS),
        out=out,
        epochs=1,
        batch_size=64,
        device="cpu",
        overrides=dict(TINY_NETS),
        eval_samples=32,
        threads=1,
    )
    return TrainArgs(**{**base, **kw})


TINY_ARGS = [
    *("train", "--model", "lmvae", "--tasks", "digits:classes=0-4,digits:classes=5-9"),
    # batch 32: 12 steps a task. With eq. 3 at the end of a task (assign_on="finished") the
    # expert that learnt task 0 is frozen with it; at batch 64 (6 steps) the other expert had
    # not learnt enough of task 1 for eq. 7 to route task 1 to it, so the Overview's task-1
    # reconstructions were the same after task 0 and after task 1 (test_earlier_snapshot).
    *("--epochs", "1", "--batch-size", "32", "--device", "cpu"),
    *("--set", "latent_dim=4", "--set", "hidden=32", "--set", "channels=8"),
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """<basetemp>/tiny-run/tiny: a 2-task L-MVAE on digits (latent_dim=4), trained once per
    session through the CLI in-process (torch is already imported)."""
    out = tmp_path_factory.getbasetemp() / "tiny-run" / "tiny"
    if not (out / "manifest.json").is_file():
        from lifelong.__main__ import main

        assert main([*TINY_ARGS, "--out", str(out)]) == 0
    return out


class StopAt(Callback):
    """Interrupts training at the start of (task, epoch): what a kill leaves, in-process."""

    def __init__(self, task, epoch):
        self.task, self.epoch = task, epoch

    def on_step(self, info):
        if (info["task"], info["epoch"]) == (self.task, self.epoch):
            raise KeyboardInterrupt
