"""The one interface every family implements (DESIGN.md, "Model interface").

Pages, the trainer and the metrics drive models only through this class, so every view works
with every family that has the capability it needs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class LatentBlock:
    """A group of latent variables: `kind` is "gaussian" or "categorical"; `owner` is an expert
    id (int), "shared", a population id, or None for single-latent models."""

    name: str
    dim: int
    kind: str = "gaussian"
    owner: int | str | None = None


Codes = dict[str, torch.Tensor]  # block name -> [N, dim] values
Posterior = dict[str, dict[str, torch.Tensor]]  # block name -> {"mu", "logvar"} or {"logits"}


class GenerativeModel(nn.Module):
    """Base class. Subclasses set `family` and `config_cls` and implement the abstract methods.

    `arch()` returns the structure that can change during training (experts added, discrete
    dimension grown); a model is rebuilt from `cls(config, arch)` before loading its weights.
    """

    family: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    is_mixture: ClassVar[bool] = False
    # One line the app shows beside every view when set: how this family infers its codes
    # where that differs from an encoder (e.g. InfoGAN's auxiliary network S).
    inference_note: ClassVar[str] = ""

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.progress = 0.0  # fraction of the current task's training done, set by the trainer

    # -- structure -------------------------------------------------------------------------
    def arch(self) -> dict:
        return {}

    def latent_blocks(self) -> list[LatentBlock]:
        raise NotImplementedError

    def experts(self) -> list[int]:
        return []

    def task_experts(self) -> list[int]:
        """For mixtures: the expert that holds each task learnt so far (-1 if none yet)."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- inference -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        raise NotImplementedError

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def route(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def select(self, x: torch.Tensor) -> torch.Tensor | None:
        """Deterministic expert per sample: [N] long (argmax of `route`), None if no mixture."""
        v = self.route(x)
        return None if v is None else v.argmax(dim=1)

    # -- training --------------------------------------------------------------------------
    def training_phases(self, n_tasks: int) -> list[list[int]]:
        """The tasks each training phase sees together, in order; a snapshot (after the
        phase's last task) and a row of the forgetting matrix follow every phase.

        Lifelong families see one task per phase. Joint training (the joint VAE upper bound,
        MVAE on the union of its tasks) returns one phase holding every task.
        """
        return [[t] for t in range(n_tasks)]

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers for one phase, made after `before_task` (which may freeze or add
        parameters). Families with several players (generator/critic) return one each."""
        return {"model": torch.optim.Adam(self.trainable_parameters(), lr=self.config.lr)}

    def train_step(
        self, batch: dict[str, torch.Tensor], task: int, optimizers: dict
    ) -> dict[str, torch.Tensor]:
        """One optimisation step on `batch` = {"x": [N, C, H, W], "y": [N], "task": [N]}.

        Returns the named loss terms (with "total"). A non-finite total is returned without
        stepping, so the weights stay as they were and the trainer stops with a clear message.
        """
        terms = self.loss(batch, task)
        if torch.isfinite(terms["total"]):
            opt = optimizers["model"]
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
        return terms

    def epoch_stats(self) -> dict[str, float]:
        """Figures recorded in the log after every epoch (e.g. MVAE's dropout rate and active
        components, paper 002 Figs. 15-16)."""
        return {}

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def before_task(self, task: int, data) -> list[dict]:
        return []

    def after_task(self, task: int, data) -> list[dict]:
        return []

    # -- helpers ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config_dict(self) -> dict:
        return config_to_dict(self.config)


def config_to_dict(config) -> dict:
    """A config dataclass as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_cls: type, data: dict):
    """Rebuild a config dataclass from JSON (a manifest: untrusted). Unknown keys are an
    error (a foreign or newer run), and every value must have its field's type (the default's:
    an int where an int is, a list of ints for a shape ...), so `latent_dim: "abc"` is refused
    here in one line instead of failing deep inside a network."""
    if not isinstance(data, dict):
        raise ValueError("config is not an object")
    names = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} field(s): {', '.join(unknown)[:200]}")
    defaults = config_cls()
    kwargs = {}
    for key, value in data.items():
        default = getattr(defaults, key)
        kwargs[key] = _typed(key, value, default)
    return config_cls(**kwargs)


def _typed(key: str, value, default):
    """`value` as the type of `default`, or ValueError naming the field."""

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = is_int(value)
    elif isinstance(default, float):
        ok = is_int(value) or isinstance(value, float)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str) and len(value) <= 200
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and len(value) <= 8 and all(map(is_int, value))
        value = tuple(value) if ok else value
    else:  # None defaults: a JSON scalar
        ok = value is None or is_int(value) or isinstance(value, float | str | bool)
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
        kind = {bool: "true or false", int: "whole number", float: "number", str: "string"}
        what = kind.get(
            type(default), "list of whole numbers" if isinstance(default, tuple) else "value"
        )
        raise ValueError(f"{key}={shown} is not a {what}")
    return value
