"""EWC on the VAE: the parameter-regularisation baseline of paper 001 (Ramapuram et al., Sec. 5).

The VAE of vae.py (the same network as an L-MVAE expert) is fine-tuned task after task with the
ELBO augmented by the EWC distance to the model that finished the previous tasks (paper 001,
Sec. 5, "EWC Learning Objective"):

    ELBO(xi) - gamma/2 (xi - Xi)^T F (xi - Xi),   F = diag(grad_Xi ELBO(x)^2)

xi are the current parameters, Xi the anchor (the teacher, i.e. the parameters when the last
task ended) and F the diagonal Fisher information estimated from the ELBO, since the true
log-likelihood is intractable. The config calls gamma `ewc_lambda`.

Reading of the paper for several tasks: paper 001 keeps one teacher Xi, "a summary of
everything seen till now", and one quadratic term against it, not one penalty per past task.
So the anchor is the latest end-of-task parameters and F is a running sum of the Fishers of all
finished tasks (online EWC; the sequential Laplace approximation of Huszar 2018): the penalty
still protects what every earlier task needs, at the memory cost of one F and one anchor, which
matches paper 001's parameter table (EWC = twice the VAE's parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong import events
from lifelong.models import ewc_core
from lifelong.models.vae import VAE, VAEConfig


@dataclass
class EWCConfig(VAEConfig):
    # gamma: not given in paper 001 (its EWC-[gamma] baselines sweep it, App. 9.5). The penalty
    # is added to the per-sample mean loss, so gamma = N_old / N_new (~1) would be the plain
    # Laplace posterior. On digits 0-4 then permuted 5-9 (paper 001's Exp. 5.2 setting, tiny
    # nets, 300 steps, 3 seeds) gamma = 100 halves the fine-tuned VAE's forgetting while still
    # learning the new task; 1e3 forgets as much and learns the new task worse, >= 1e4 hardly
    # learns it at all.
    ewc_lambda: float = 100.0
    fisher_samples: int = 512  # images of the finished task the Fisher is averaged over
    fisher_batch: int = 64  # per-sample gradients computed this many at a time

    def validate(self) -> None:
        super().validate()
        if self.joint:
            raise ValueError("ewc has no task sequence to protect when joint; use vae joint=true")
        if self.ewc_lambda < 0:
            raise ValueError(f"ewc_lambda must be >= 0, not {self.ewc_lambda}")
        if self.fisher_samples < 1 or self.fisher_batch < 1:
            raise ValueError("fisher_samples and fisher_batch must be >= 1")


class EWC(ewc_core.EWCPenalty, VAE):
    """The VAE plus the EWC penalty (ewc_core). `fisher` and `anchor` are flat [P] buffers over
    `parameters()` in order (P = number of parameters), so snapshots rebuild the penalty."""

    family = "ewc"
    config_cls = EWCConfig

    def __init__(self, config: EWCConfig, arch: dict | None = None):
        super().__init__(config, arch)
        self.init_ewc()

    def ewc_net(self) -> VAE:
        return self  # forward: the one-sample ELBO per image, z ~ q(z|x) reparameterised

    def penalty(self) -> torch.Tensor:
        """gamma/2 sum_i F_i (xi_i - Xi_i)^2: a scalar, differentiable in the parameters; its
        gradient is gamma F (xi - Xi)."""
        return self.ewc_penalty(self.config.ewc_lambda)

    def loss(self, batch: dict[str, torch.Tensor], task: int) -> dict[str, torch.Tensor]:
        out = super().loss(batch, task)
        out["ewc"] = self.penalty()
        out["total"] = out["total"] + out["ewc"]
        return out

    def fisher_diagonal(self, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Diagonal Fisher from the ELBO at the current parameters: x [N, C, H, W] -> [P] >= 0.

        Estimator (paper 001, Sec. 5): for each image x_n, the gradient g_n of its one-sample
        ELBO estimate (z ~ q(z|x_n) reparameterised, one fresh draw per image) with respect to
        every parameter, then F = mean_n g_n^2. This is the empirical Fisher of the ELBO at the
        data; per-sample gradients come from torch.func (vmap of grad), `fisher_batch` at a time.
        """
        return super().fisher_diagonal(x, batch or self.config.fisher_batch)

    def after_task(self, task: int, data) -> list[events.Event]:
        """Consolidate the finished task: F += F_task on `fisher_samples` of its images (a seeded
        subset, so a resumed run rebuilds the same F) and move the anchor to the current
        parameters."""
        cfg = self.config
        return self.consolidate(task, data, cfg.fisher_samples, cfg.fisher_batch)
