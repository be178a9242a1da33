"""The single-VAE baselines every comparison in the papers needs (seeds/README.md, "Baselines").

One conv VAE, built from the very expert L-MVAE uses (nets.VAEExpert with the same defaults), so
a baseline and a mixture differ only in how they learn, never in their networks:

- default: fine-tuned task after task with nothing to protect the past, so it forgets
  ("vanilla-vae" of paper 001 Sec. 5, "Transfer" of paper 000 Table I);
- `joint=True`: one training phase on the union of every task, the upper bound ("JVAE" of paper
  000 Table I, "full-vae" of paper 001 Sec. 5). The trainer then makes a single snapshot, after
  the last task, and a single row of the forgetting matrix.

The objective offers L-MVAE's per-expert options (paper 000): plain ELBO (eq. 1), a fixed beta,
beta annealing (eq. 28) and the capacity objective (eq. 17), so each can be compared like for
like. EWC (paper 001 Sec. 5) subclasses this model in ewc.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong import losses
from lifelong.models.base import Codes, GenerativeModel, LatentBlock, Posterior
from lifelong.models.nets import VAEExpert


@dataclass
class VAEConfig:
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    latent_dim: int = 10
    channels: int = 32
    hidden: int = 128
    lr: float = 1e-3
    joint: bool = False  # True: train once on the union of all tasks (JVAE / full-vae)
    objective: str = "elbo"  # "elbo": eq. 1 (with beta); "capacity": paper 000 eq. 17
    beta: float = 1.0  # weight of the KL term (1: the ELBO); the end value when annealed
    beta_anneal: bool = False  # paper 000 eq. 28: beta rises from beta_start to `beta`
    beta_start: float = 0.0
    beta_warmup: float = 0.5  # fraction of a phase's training over which beta is reached
    gamma: float = 4.0  # eq. 17 weight of |KL - C| (paper 000 Sec. VII-D: gamma = 4)
    capacity_max: float = 25.0  # eq. 17: C rises linearly from 0 to this (nats) in each phase

    def validate(self) -> None:
        if self.objective not in ("elbo", "capacity"):
            raise ValueError(f"objective must be 'elbo' or 'capacity', not {self.objective!r}")
        if self.beta < 0 or self.beta_start < 0:
            raise ValueError(
                f"beta and beta_start must be >= 0 (got {self.beta}, {self.beta_start})"
            )
        if min(self.latent_dim, self.channels, self.hidden, self.n_tasks) < 1:
            raise ValueError("latent_dim, channels, hidden and n_tasks must be >= 1")


class VAE(GenerativeModel):
    """One VAE: a single Gaussian latent block "z" of `latent_dim` variables, no experts."""

    family = "vae"
    config_cls = VAEConfig

    def __init__(self, config: VAEConfig, arch: dict | None = None):
        super().__init__(config)
        config.validate()
        cfg = config
        self.net = VAEExpert(cfg.image_shape, cfg.latent_dim, cfg.channels, cfg.hidden)

    # -- structure -----------------------------------------------------------------------
    def latent_blocks(self) -> list[LatentBlock]:
        return [LatentBlock("z", self.config.latent_dim, "gaussian", None)]

    def training_phases(self, n_tasks: int) -> list[list[int]]:
        """Fine-tuning: one task per phase. Joint: every task in one phase (the upper bound)."""
        if self.config.joint:
            return [list(range(n_tasks))]
        return super().training_phases(n_tasks)

    # -- inference -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample one-sample ELBO estimate (eq. 1): x [N, C, H, W] -> [N] nats. A forward
        makes the model usable with torch.func (EWC's per-sample gradients)."""
        return losses.elbo(self.terms(x))

    def terms(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """rec = log p(x|z) with z ~ q(z|x) (or its mean), kl = KL(q(z|x) || N(0, I)); [N]."""
        mu, logvar = self.net.encode(x)
        z = losses.reparameterise(mu, logvar) if sample else mu
        return losses.vae_terms(self.net.decode_logits(z), x, mu, logvar)

    def encode(self, x: torch.Tensor, expert: int | None = None) -> Posterior:
        mu, logvar = self.net.encode(x)
        return {"z": {"mu": mu, "logvar": logvar}}

    def decode(self, codes: Codes, expert: int | None = None) -> torch.Tensor:
        return torch.sigmoid(self.net.decode_logits(codes["z"]))

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """Decode the posterior mean: a deterministic reconstruction."""
        mu, _ = self.net.encode(x)
        return torch.sigmoid(self.net.decode_logits(mu))

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """n draws z ~ N(0, I) decoded; a single VAE has no per-task prior, `task` is ignored."""
        z = torch.randn(n, self.config.latent_dim, device=self.device)
        return torch.sigmoid(self.net.decode_logits(z))

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        return self.forward(x)

    # -- training ------------------------------------------------------------------------
    def _beta(self) -> float:
        cfg = self.config
        if not cfg.beta_anneal:
            return cfg.beta
        ramp = min(1.0, self.progress / max(cfg.beta_warmup, 1e-8))
        return cfg.beta_start + (cfg.beta - cfg.beta_start) * ramp  # paper 000 eq. 28

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        """Negative objective averaged over the batch, with its named terms (nats/sample)."""
        cfg = self.config
        terms = self.terms(batch["x"])
        if cfg.objective == "capacity":
            capacity = cfg.capacity_max * self.progress
            objective = losses.capacity_objective(terms, cfg.gamma, capacity)  # eq. 17
        else:
            objective = losses.elbo(terms, self._beta())  # eq. 1, or eq. 28 when annealed
        out = {
            "total": -objective.mean(),
            "rec": -terms["rec"].mean(),
            "kl": terms["kl"].mean(),
        }
        if cfg.beta_anneal:
            out["beta"] = torch.tensor(self._beta())
        if cfg.objective == "capacity":
            out["capacity"] = torch.tensor(capacity)
        return out
