"""Loss terms as pure functions of tensors. Every function returns per-sample values [N] (or a
dict of named [N] terms) so callers can weight, average or route them as their paper says."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims: [N, d] -> [N] nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) of a Bernoulli decoder, summed over pixels: logits, x [N, C, H, W] -> [N]."""
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return -nll.flatten(1).sum(dim=1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) (paper 000, Sec. III-B)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def vae_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The two terms of the ELBO (paper 000, eq. 1): rec = E_q log p(x|z), kl = KL(q||p); [N]."""
    return {"rec": bernoulli_log_likelihood(logits, x), "kl": gaussian_kl(mu, logvar)}


def elbo(terms: dict[str, torch.Tensor], beta: float = 1.0) -> torch.Tensor:
    """ELBO (eq. 1), or with beta != 1 the annealed bound of paper 000 eq. 28: rec - beta*KL."""
    return terms["rec"] - beta * terms["kl"]


def capacity_objective(terms: dict[str, torch.Tensor], gamma: float, capacity: float):
    """Per-expert term of paper 000 eq. 17: rec - gamma * |KL - C| (Burgess et al.); [N]."""
    return terms["rec"] - gamma * (terms["kl"] - capacity).abs()


def melbo(per_expert: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MELBO, paper 000 eq. 2: sum_i w_i L_i / sum_i w_i.

    per_expert: [K, N] objectives of each expert; weights: [K] mixing weights -> [N].
    """
    w = weights / weights.sum()
    return (w[:, None] * per_expert).sum(dim=0)


def assignment_probabilities(
    expert_loss: torch.Tensor, assigned: torch.Tensor, u: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper 000 eq. 3, averaged over batches, in log space.

    expert_loss: [B, K] loss L^j(x_b) of expert j on batch b (nats per sample, loss = -ELBO);
    assigned: [K] bool, c'_j (experts already holding a task); u: the large constant of eq. 3.

    p(c_j) = 1 - (exp(-L_j) + u c'_j) / sum_i (exp(-L_i) + u c'_i). exp(-L) underflows for
    losses of hundreds of nats, so q_j = 1 - p(c_j) is computed as a log-ratio. Returns
    (p [K], log_q [K]) where p is the batch average of eq. 3 and log_q = log(mean_b q_j^b), which
    ranks experts exactly even when p rounds to 1.0 in floating point.
    """
    loss = expert_loss.double()
    log_u = torch.full_like(loss, math.log(u))
    log_num = torch.where(assigned[None, :], torch.logaddexp(-loss, log_u), -loss)
    log_q = log_num - torch.logsumexp(log_num, dim=1, keepdim=True)  # [B, K]
    log_q_mean = torch.logsumexp(log_q, dim=0) - math.log(loss.shape[0])
    return 1.0 - log_q_mean.exp(), log_q_mean


def dirichlet_parameters(assigned: torch.Tensor, e: float) -> torch.Tensor:
    """Paper 000 eq. 6: a_i = e for experts holding a task, (1 - e K') / (K - K') otherwise.

    assigned: [K] bool -> a [K]. K' = number of assigned experts.
    """
    k = assigned.numel()
    k_done = int(assigned.sum())
    free = (1.0 - e * k_done) / max(k - k_done, 1)
    return torch.where(assigned, torch.tensor(e), torch.tensor(free)).float()


def selection_probabilities(elbos: torch.Tensor) -> torch.Tensor:
    """Test-time expert selection, paper 000 eq. 7: v_i = softmax_i(-1 / L_i).

    elbos: [N, K] per-sample ELBO of each expert. Eq. 7 is read with L = ELBO (negative): then
    -1/L = 1/|L| grows as the ELBO improves, so v favours the expert that explains x best, which
    is what Alg. 1 l. 17-19 selects for. (Read with L = loss it would favour the worst expert.)
    ELBOs are clamped below zero so the reciprocal stays finite.
    """
    return torch.softmax(-1.0 / elbos.clamp(max=-1e-3), dim=-1)


def gumbel_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Paper 000 eq. 20: d_k = softmax_k((log d'_k + g_k) / T), g_k ~ Gumbel(0, 1), with
    d' = softmax(logits); a relaxed one-hot sample, differentiable in the logits. [N, C]."""
    log_p = torch.log_softmax(logits, dim=-1)
    g = -torch.log(-torch.log(torch.rand_like(log_p).clamp(1e-20, 1.0 - 1e-7)))
    return torch.softmax((log_p + g) / temperature, dim=-1)


def categorical_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(Cat(softmax(logits)) || uniform over C) = sum_k q_k log q_k + log C: [N, C] -> [N]
    nats (the discrete term D_KL[q(d|x) || p(d)] of paper 000 eq. 18)."""
    log_q = torch.log_softmax(logits, dim=-1)
    return (log_q.exp() * log_q).sum(dim=-1) + math.log(logits.shape[-1])
