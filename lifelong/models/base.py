"""The one interface every family implements (DESIGN.md, "Model interface"): the public
protocol a family from outside the project implements too (README, "Bring your own model").

Pages, the trainer and the metrics drive models only through this class, so every view works
with every family that has the capability it needs. A family declares what it can do once, in
`capabilities`, instead of being probed for attributes; its task-boundary hooks return typed
events (lifelong/events.py). `lifelong.testing.check_family` checks a family against all of it.

What a family implements, with shapes (N images [N, C, H, W] in [0, 1], `config.image_shape`
= (C, H, W)):
- `latent_blocks()`: the latent variables, as LatentBlocks;
- `encode(x, expert)` -> {block: {"mu", "logvar"} [N, dim] or {"logits"} [N, dim]};
- `decode(codes, expert)` -> [N, C, H, W] Bernoulli means from {block: [N, dim]};
- `reconstruct(x, expert)`, `sample(n, task, expert)` -> images; `score(x, expert)` -> [N]
  (higher = explains x better: the ELBO for a VAE);
- `loss(batch, task)` -> named terms with "total" (or `train_step` for several players);
- optionally `before_task` / `after_task` (events), `arch()` (what grows), `epoch_stats()`;
- a mixture (`capabilities.mixture`): `experts()`, `task_experts()`, `route(x)` [N, K].
A config is a dataclass with a default for every field (the --set options); a `validate()`
method, when it has one, refuses bad values with a one-line ValueError.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lifelong.events import Event


@dataclass(frozen=True)
class LatentBlock:
    """A group of latent variables: `kind` is "gaussian" or "categorical"; `owner` is an expert
    id (int), "shared", a population id, or None for single-latent models."""

    name: str
    dim: int
    kind: str = "gaussian"
    owner: int | str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a family can do, declared on its class (`capabilities = Capabilities(...)`).

    mixture: experts with their own codes: `experts()`, `route(x)`, and `expert=` on encode,
        decode, reconstruct, score (the Compare experts, dHSIC and Expert timeline pages);
    likelihood: how log p(x) is bounded (eval's IWELBO): "bound" from encode / decode_logits
        (lifelong/likelihood.py), "own" by the family's `log_likelihood_is(x, k)`, "none" for
        an implicit model (a GAN's generator);
    populations: shared and private codes (paper 004): `reconstruct_parts`, `decode_cross`,
        `swap_shared` (the Shared / private page);
    replay: generative replay whose images `replayed_samples()` keeps (the Forgetting page);
    sampling: `sample()` generates (the Generation grid, Frechet distance, Fitting Capacity).
    """

    mixture: bool = False
    likelihood: str = "bound"
    populations: bool = False
    replay: bool = False
    sampling: bool = True

    def __post_init__(self):
        if self.likelihood not in ("bound", "own", "none"):
            raise ValueError(f"likelihood={self.likelihood!r}; valid: bound, own, none")


Codes = dict[str, torch.Tensor]  # block name -> [N, dim] values
Posterior = dict[str, dict[str, torch.Tensor]]  # block name -> {"mu", "logvar"} or {"logits"}


class GenerativeModel(nn.Module):
    """Base class. Subclasses set `family`, `config_cls` (the registry reads the config class
    from here) and `capabilities`, and implement the methods the module doc lists.

    `arch()` returns the structure that can change during training (experts added, discrete
    dimension grown); a model is rebuilt from `create(config, arch)` before loading its weights.
    """

    family: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    capabilities: ClassVar[Capabilities] = Capabilities()
    # One line the app shows beside every view when set: how this family infers its codes
    # where that differs from an encoder (e.g. InfoGAN's auxiliary network S).
    inference_note: ClassVar[str] = ""

    @classmethod
    def create(cls, config: Any, arch: dict | None = None) -> GenerativeModel:
        """The model for `config` and `arch` (how the registry builds one). A family whose
        options select another class (L-MVAE's supervision) returns it from here."""
        return cls(config, arch) if arch is not None else cls(config)

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

    def decode_logits(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        """The Bernoulli decoder's logits [N, C, H, W]. By default from `decode`'s means
        (clamped: float32 saturates within 6e-8 of 1); a family with logits returns them."""
        p = self.decode(codes, expert).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)

    def log_likelihood_is(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """[N] the family's own importance-sampled log p(x) with k samples: for
        `capabilities.likelihood == "own"` (CPVAE's eqs. 7-8)."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def route(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def assess(
        self, x: torch.Tensor, score: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(reconstruct(x), score(x) or None when not `score`, select(x)): what the trainer's
        evaluation (lifelong/train/evaluate.py) and the pages' routed reconstructions read of
        one batch. A family whose `reconstruct` and `score` each select on their own
        overrides it to select once (L-MVAE's eq. 7); the values stay those of the calls."""
        return self.reconstruct(x), self.score(x) if score else None, self.select(x)

    def replayed_samples(self) -> dict[int, torch.Tensor]:
        """For `capabilities.replay`: task -> the replayed images [G, C, H, W] recorded when
        it started (the Forgetting page shows them)."""
        return {}

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
        lr = getattr(self.config, "lr", 1e-3)  # Adam's default where a config names no rate
        return {"model": torch.optim.Adam(self.trainable_parameters(), lr=lr)}

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

    def before_task(self, task: int, data) -> list[Event]:
        """Called before training on task `task` (`data` its training set: .x, .y, .task):
        freeze, grow or assign here. Returns the events the timeline shows (events.py)."""
        return []

    def after_task(self, task: int, data) -> list[Event]:
        """Called after the task's last epoch, before its snapshot. Returns events."""
        return []

    def sync_trainable(self) -> None:
        """Set `requires_grad` from the model's own state (which experts are frozen), after
        its weights and buffers were loaded (a snapshot, a checkpoint). Frozen parameters
        must stay bit-identical while later tasks train (the kit checks it)."""

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
