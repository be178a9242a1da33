"""beta-VAE (Higgins et al., ICLR 2017) as a plugin family: the whole of what a researcher
writes to see their own model on every page of the explorer.

One Gaussian latent block z of `latent_dim` variables, its own fully connected encoder and
Bernoulli decoder (no network of the project is used), trained on

    L = -E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I))          (Higgins et al., eq. 4)

task after task (it forgets, like any fine-tuned VAE). After each task it reports a typed
event of its own, `ActiveUnits`: which latent variables carry information (mean KL above
0.01 nats), the usual reading of a beta-VAE's disentangled code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from lifelong.events import Event
from lifelong.models import Capabilities, GenerativeModel, LatentBlock


@dataclass
class BetaVAEConfig:
    """The --set options; image_shape and n_tasks are filled from the task sequence."""

    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_tasks: int = 1
    latent_dim: int = 10
    hidden: int = 256
    beta: float = 4.0
    lr: float = 1e-3

    def validate(self) -> None:
        if self.beta < 0 or min(self.latent_dim, self.hidden) < 1:
            raise ValueError("beta must be >= 0, latent_dim and hidden >= 1")


@dataclass(frozen=True)
class ActiveUnits(Event):
    """The latent variables whose mean KL on the finished task's images exceeds 0.01 nats."""

    kind: ClassVar[str] = "betavae_active_units"
    active: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)

    def describe(self) -> str:
        return f"{len(self.active)} of {len(self.kl)} latent variables active: {self.active}"


class BetaVAE(GenerativeModel):
    """beta-VAE with fully connected networks: a single latent space, no experts."""

    family = "betavae"
    config_cls = BetaVAEConfig
    capabilities = Capabilities()  # a plain VAE: the generic IWELBO bound applies

    def __init__(self, config: BetaVAEConfig, arch: dict | None = None):
        super().__init__(config)
        c, h, w = config.image_shape
        d, n = config.latent_dim, config.hidden
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n), nn.ReLU())
        self.mu, self.logvar = nn.Linear(n, d), nn.Linear(n, d)
        self.decoder = nn.Sequential(
            nn.Linear(d, n), nn.ReLU(), nn.Linear(n, c * h * w), nn.Unflatten(1, (c, h, w))
        )

    def latent_blocks(self) -> list[LatentBlock]:
        return [LatentBlock("z", self.config.latent_dim)]

    def encode(self, x: torch.Tensor, expert: int | None = None) -> dict:
        """x [N, C, H, W] -> {"z": {"mu", "logvar"} [N, latent_dim]}."""
        h = self.encoder(x)
        return {"z": {"mu": self.mu(h), "logvar": self.logvar(h).clamp(-10, 10)}}

    def decode_logits(self, codes: dict, expert: int | None = None) -> torch.Tensor:
        return self.decoder(codes["z"])

    def decode(self, codes: dict, expert: int | None = None) -> torch.Tensor:
        """{"z": [N, latent_dim]} -> Bernoulli means [N, C, H, W]."""
        return torch.sigmoid(self.decode_logits(codes))

    def reconstruct(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        return self.decode({"z": self.encode(x)["z"]["mu"]})

    def sample(self, n: int, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        return self.decode({"z": torch.randn(n, self.config.latent_dim, device=self.device)})

    def _terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: reconstruction NLL [N] and KL per latent variable [N, latent_dim]."""
        post = self.encode(x)["z"]
        mu, logvar = post["mu"], post["logvar"]
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        nll = nn.functional.binary_cross_entropy_with_logits(
            self.decode_logits({"z": z}), x, reduction="none"
        ).flatten(1)
        return nll.sum(1), 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)

    def score(self, x: torch.Tensor, expert: int | None = None) -> torch.Tensor:
        """One-sample ELBO per image [N] (beta = 1: a bound on log p(x))."""
        nll, kl = self._terms(x)
        return -(nll + kl.sum(1))

    def loss(self, batch: dict, task: int) -> dict[str, torch.Tensor]:
        nll, kl = self._terms(batch["x"])
        rec, kl = nll.mean(), kl.sum(1).mean()
        return {"total": rec + self.config.beta * kl, "reconstruction": rec, "kl": kl}

    @torch.no_grad()
    def after_task(self, task: int, data) -> list[Event]:
        x = data.x[:512].to(self.device)
        kl = self._terms(x)[1].mean(0)
        active = (kl > 0.01).nonzero().flatten().tolist()
        return [ActiveUnits(task, active=active, kl=[round(float(v), 4) for v in kl])]
