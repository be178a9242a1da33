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


def dirichlet_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(Dir(a) || Dir(b)), paper 002 eq. 28: a [N, K] (or [K]), b broadcastable -> [N] nats.

    log G(a0) - sum log G(a_i) - log G(b0) + sum log G(b_i) + sum (a_i - b_i)(psi(a_i) - psi(a0))
    with a0 = sum_i a_i, b0 = sum_i b_i.
    """
    b = b.expand_as(a)
    a0, b0 = a.sum(-1), b.sum(-1)
    return (
        torch.lgamma(a0)
        - torch.lgamma(a).sum(-1)
        - torch.lgamma(b0)
        + torch.lgamma(b).sum(-1)
        + ((a - b) * (torch.digamma(a) - torch.digamma(a0)[..., None])).sum(-1)
    )


def relaxed_keep_mask(drop_logit: torch.Tensor, temperature: float, shape) -> torch.Tensor:
    """Paper 002 eq. 22: m = e^((log(1-p) + g1)/T) / (e^((log(1-p) + g1)/T) + e^((log p + g2)/T))
    with p = sigmoid(drop_logit) [K], g1, g2 ~ Gumbel(0, 1): a relaxed Bernoulli(1 - p) keep mask
    of `shape` (..., K), differentiable in p. Eq. 22 as printed has log(1-p) in both terms, which
    would make m independent of p; the second term must be log p (a two-class Gumbel-softmax
    over keep/drop, eq. 21), else the dropout rate could not be learnt."""
    u = torch.rand(*shape, 2, device=drop_logit.device).clamp(1e-10, 1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    keep = (F.logsigmoid(-drop_logit) + g[..., 0]) / temperature
    drop = (F.logsigmoid(drop_logit) + g[..., 1]) / temperature
    return torch.sigmoid(keep - drop)


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log p - (1-p) log(1-p) (paper 002 eq. 23), elementwise, in nats."""
    p = p.clamp(1e-7, 1.0 - 1e-7)
    return -p * torch.log(p) - (1.0 - p) * torch.log1p(-p)


# Kingma, Salimans & Welling (2015), "Variational dropout and the local reparameterization
# trick", eq. 10: -KL ~ 0.5 log a + c1 a + c2 a^2 + c3 a^3 + const, for a <= 1.
_VD_C = (1.16145124, -1.50204118, 0.58629921)


def gaussian_dropout_kl(tau: torch.Tensor) -> torch.Tensor:
    """Paper 002 eq. 19: KL(q(m) || p(m)) ~ c - 0.5 log tau - c1 tau - c2 tau^2 - c3 tau^3 for a
    Gaussian dropout mask m ~ N(1, tau), tau = p / (1 - p) <= 1, elementwise. The constants are
    those of Kingma et al. (2015), the paper's [42]; c = c1 + c2 + c3 puts the minimum, 0, at
    tau = 1 (the KL decreases on (0, 1], so it pushes every mask towards more noise)."""
    c1, c2, c3 = _VD_C
    return (c1 + c2 + c3) - 0.5 * torch.log(tau) - c1 * tau - c2 * tau**2 - c3 * tau**3


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(Cat(softmax(p_logits)) || Cat(softmax(q_logits))): [N, Jp], [N, Jq] -> [N] nats.

    With Jp < Jq, p is zero-padded to Jq categories (paper 001 App. 9.8: a teacher's smaller
    discrete posterior against a grown student); padded entries contribute 0 log 0 = 0."""
    log_p = torch.log_softmax(p_logits, dim=-1)
    log_q = torch.log_softmax(q_logits, dim=-1)[..., : p_logits.shape[-1]]
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """Differential entropy of N(mu, diag(exp(logvar))), summed over dims: [N, d] -> [N] nats."""
    return 0.5 * (logvar + math.log(2 * math.pi * math.e)).sum(dim=-1)


# -- InfoGAN (paper 003): WGAN-GP gradient penalty and the mutual-information bound ----------


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps=None) -> dict:
    """The WGAN-GP term of paper 003 eq. 2 (Gulrajani et al. 2017), per sample:
    (||grad_o D(o_hat)||_2 - 1)^2 at o_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1].

    critic: [N, ...] -> [N] (or [N, 1]); real, fake [N, ...]; eps [N] (drawn when None).
    Returns {"penalty": [N], "grad_norm": [N]}. The interpolates are a fresh leaf built out of
    place from detached inputs and the input gradient comes from torch.autograd.grad with
    create_graph=True (no .backward() into .grad, no in-place ops on graph tensors), so the
    penalty's own gradient reaches the critic's parameters and the function works under DDP
    and autocast (the norm is taken in float32)."""
    n = real.shape[0]
    if eps is None:
        eps = torch.rand(n, device=real.device, dtype=real.dtype)
    eps = eps.reshape(n, *([1] * (real.dim() - 1)))
    with torch.enable_grad():  # also when a loss is evaluated under no_grad
        x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
        out = critic(x_hat).reshape(n)
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    # + 1e-12 keeps the norm differentiable where the gradient vanishes.
    norm = torch.sqrt(grad.float().flatten(1).pow(2).sum(dim=1) + 1e-12)
    return {"penalty": (norm - 1.0).pow(2), "grad_norm": norm}


def infogan_mi(
    c: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    d: torch.Tensor,
    logits: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Paper 003 eq. 10 per sample: L_MI = E log S(u|o) + H(u) <= I(u; G(z, u)), u = (c, d),
    split over S's two heads (c and d are independent under the prior and under S).

    c [N, m]: the continuous code G received; (mu, logvar) [N, m]: S's Gaussian head on the
    generated o. d [N] (long): the category G received; logits [N, k]: S's categorical head.
    Returns {"mi_c", "mi_d", "mi"} [N] nats: mi_c = log N(c; mu, exp(logvar)) + H(N(0, I_m)),
    mi_d = log S(d|o) + log k, mi = mi_c + mi_d. Eq. 10 treats H(u) as a constant; adding it
    changes no gradient and makes the terms read as nats of mutual information (mi_d <= log k,
    reached when S recovers d with certainty)."""
    log_s_c = -0.5 * (math.log(2 * math.pi) + logvar + (c - mu).pow(2) * torch.exp(-logvar))
    h_c = 0.5 * math.log(2 * math.pi * math.e) * c.shape[-1]
    log_s_d = -F.cross_entropy(logits, d, reduction="none")
    mi_c = log_s_c.sum(dim=-1) + h_c
    mi_d = log_s_d + math.log(logits.shape[-1])
    return {"mi_c": mi_c, "mi_d": mi_d, "mi": mi_c + mi_d}
