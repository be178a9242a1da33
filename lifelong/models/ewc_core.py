"""EWC's penalty and diagonal Fisher (paper 001 Sec. 5), shared by EWC on the baselines' VAE
(ewc.py) and EWC on LGM's own graphical model (lgm.py, `regulariser="ewc"`):

    ELBO(xi) - gamma/2 (xi - Xi)^T F (xi - Xi),   F = diag(grad_Xi ELBO(x)^2)

xi are the trainable parameters flattened in order [P], Xi the anchor (the parameters when
the last task ended), F the running sum of each finished task's empirical Fisher of the ELBO
(ewc.py's module docstring says why one anchor and a summed F).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parameters_to_vector

from lifelong import events


def penalty(
    params: Iterable[nn.Parameter], anchor: torch.Tensor, fisher: torch.Tensor, gamma: float
) -> torch.Tensor:
    """gamma/2 sum_i F_i (xi_i - Xi_i)^2 []: differentiable in `params`, whose gradient is
    gamma F (xi - Xi). anchor, fisher: [P] in the order of `params`."""
    delta = parameters_to_vector(params) - anchor
    return 0.5 * gamma * (fisher * delta.pow(2)).sum()


def fisher_diagonal(
    params: dict[str, torch.Tensor],
    elbo_one: Callable[[dict, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch: int,
) -> torch.Tensor:
    """Empirical diagonal Fisher of the ELBO: x [N, C, H, W] -> [P] >= 0, P the sizes of
    `params` (name -> detached tensor) flattened in their order.

    For each image x_n, the gradient g_n of `elbo_one(params, x_n)` (one image [C, H, W] ->
    its one-sample ELBO []) with respect to every parameter, then F = mean_n g_n^2; per-sample
    gradients by torch.func (vmap of grad, a fresh draw per image), `batch` images at a time.
    """
    names = list(params)
    per_sample = vmap(grad(elbo_one), in_dims=(None, 0), randomness="different")
    total = torch.zeros(sum(p.numel() for p in params.values()), device=x.device)
    for i in range(0, len(x), batch):
        g = per_sample(params, x[i : i + batch])
        total += torch.cat([g[n].flatten(1) for n in names], dim=1).pow(2).sum(0)
    return total / len(x)


def task_sample(data_x: torch.Tensor, task: int, n: int) -> torch.Tensor:
    """The finished task's images the Fisher is averaged over: a subset of n seeded by the
    task, so a resumed run rebuilds the same F; [min(n, N), C, H, W]."""
    g = torch.Generator().manual_seed(3000 + task)
    return data_x[torch.randperm(len(data_x), generator=g)[:n]]


class EWCPenalty:
    """Mixin for a model (an nn.Module) regularised by EWC over the parameters of one network,
    `ewc_net()`, whose forward maps images [N, C, H, W] to their one-sample ELBO [N]. Buffers
    (in the state dict, so a snapshot rebuilds the penalty): fisher, anchor [P] and the number
    of tasks consolidated."""

    def init_ewc(self) -> None:
        n = sum(p.numel() for p in self.ewc_net().parameters())
        self.register_buffer("fisher", torch.zeros(n))  # sum over finished tasks of F_t
        self.register_buffer("anchor", torch.zeros(n))  # Xi: parameters when the last task ended
        self.register_buffer("consolidated", torch.tensor(0))  # number of tasks in `fisher`

    def ewc_net(self) -> nn.Module:
        raise NotImplementedError

    def ewc_penalty(self, gamma: float) -> torch.Tensor:
        """`penalty` at the current parameters; zero before the first task ends (F = 0), where
        it is not computed (flattening every parameter each step cost ~15 % of a task's
        throughput)."""
        if int(self.consolidated) == 0:
            return torch.zeros((), device=self.anchor.device)
        return penalty(self.ewc_net().parameters(), self.anchor, self.fisher, gamma)

    def fisher_diagonal(self, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """The empirical Fisher [P] of `ewc_net()`'s ELBO on images x (`fisher_diagonal`)."""
        net = self.ewc_net()
        params = {n: p.detach() for n, p in net.named_parameters()}

        def elbo_one(p: dict, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(net, p, (xi[None],))[0]

        return fisher_diagonal(params, elbo_one, x, batch)

    def consolidate(self, task: int, data, samples: int, batch: int) -> list[events.Event]:
        """After a task: F += F_task on `samples` of its images (`task_sample`), and the anchor
        moves to the current parameters."""
        x = task_sample(data.x, task, samples).to(self.anchor.device)
        was_training = self.training
        self.eval()  # the nets have no dropout/batch norm, but keep the estimate mode-free
        f_task = self.fisher_diagonal(x, batch)
        self.train(was_training)
        with torch.no_grad():
            self.fisher += f_task
            self.anchor.copy_(parameters_to_vector(self.ewc_net().parameters()))
            self.consolidated += 1
        consolidated = events.EwcConsolidated(
            task,
            samples=len(x),
            fisher_task_mean=float(f_task.mean()),
            fisher_task_max=float(f_task.max()),
            fisher_total_mean=float(self.fisher.mean()),
        )
        return [consolidated]
