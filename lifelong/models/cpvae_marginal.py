"""Population classification of CPVAE (paper 004, Sec. 4.3): a test input goes to the
population k of largest marginal likelihood p(x | theta_k, theta_s) (eq. 7), each estimated by
importance sampling with the inference network as proposal (eq. 8):

    log p(x | k) ~ log (1/S) sum_s p(x | z_s, t_s; theta_s, theta_k) p(z_s) p(t_s)
                                   / (q_s(z_s | x) q_k(t_s | x)),  z_s ~ q_s, t_s ~ q_k,

with p(z) = p(t_k) = N(0, I) (eq. 1) and q_k population k's own private head (eq. 2). The
estimate is unbiased in p for any proposal, so the choice of head moves only its variance: the
log of it is a lower bound that rises towards eq. 7's value as S grows.

What eq. 7 scores, measured on the textured digits 0-4 | 5-9 (the shipped run's populations)
trained with App. B.2's sizes (shared 10, private 10) and no augmentation: eq. 6 charges a
population's private posterior no KL on its *own* data (only on the others'), so nothing kept
the codes of its own images near the prior: they sat at |mu| ~ 6 with sd ~ 0.08, 54 nats from
N(0, I), and eq. 7 charged the true population those nats. The other population's private
decoder is never trained at prior draws (its own codes lie elsewhere) and there drew loose
strokes correlated 0.3-0.6 with the digit that f_s(z) leaves unexplained, at no code cost.
With one sample (an ELBO) the right population won 76 % of the time; as S grew, the other
population's estimate (proposal ~ prior, a loose bound at S = 1) rose by ~40 nats and the own
one by ~6, so accuracy fell to 44 % (S = 16) and 31 % (S = 128): the estimator converging on
a model whose eq. 7 prefers the wrong population, not estimator noise (the test checks eq. 8
against eq. 7 by quadrature). The cost of the own codes is what moves it (accuracy S = 16 /
128, own-code nats): shared / private 10 / 10: 45 / 31 %, 54; 30 / 10: 66 / 48 %, 49; 10 / 5:
81 / 74 %, 29; App. B.1's Grassy-MNIST 30 / 5: 91 / 88 %, 23, falling to 82 / 71 % (30 nats)
by 80 epochs; 30 / 5 with B.1's 10 % shifts: 92 / 94 %, 13 (40 epochs), 94 / 95 %, 18 (80).
(Seed 0, 40 epochs unless said; seed 1: 30 / 5 92 / 91 %, with shifts 94 / 92 %.) Table 2
itself classifies one population per digit (77.5 % on MNIST-GRASS); ten textured populations
with 30 / 5 and no shifts gave 51 / 44 % here (chance 10 %).
"""

from __future__ import annotations

import math

import torch

from lifelong import losses

LOG_2PI = math.log(2 * math.pi)


def log_ratio(v: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(v; 0, I) - log N(v; mu, exp(logvar)), summed over the last dim."""
    log_q = -0.5 * (LOG_2PI + logvar + (v - mu).pow(2) * torch.exp(-logvar)).sum(-1)
    return -0.5 * (LOG_2PI + v.pow(2)).sum(-1) - log_q


def _draw(mu: torch.Tensor, logvar: torch.Tensor, s: int) -> torch.Tensor:
    """s reparameterised draws of N(mu, exp(logvar)): [s, *mu.shape]."""
    return mu + torch.randn(s, *mu.shape, device=mu.device) * (0.5 * logvar).exp()


@torch.no_grad()
def population_log_likelihoods(model, x: torch.Tensor, samples: int) -> torch.Tensor:
    """Eq. 8's estimate of log p(x | theta_k, theta_s) for every population k of a CPVAE:
    [N, T] nats; -inf for populations not learnt yet (all count before any is). The same z
    draws serve every population, so their differences are not blurred by independent noise
    in f_s; each population draws t from its own head q_k(t | x)."""
    s = samples
    learnt = model.seen if bool(model.seen.any()) else torch.ones_like(model.seen)
    out = x.new_full((len(x), model.config.n_tasks), float("-inf"))
    chunk = max(1, 4096 // s)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        n = len(xb)
        h = model.body(xb)
        mu, logvar = model.shared_head(h)
        z = _draw(mu, logvar, s)  # [S, n, latent_dim] ~ q_s(z | x)
        ratio_z = log_ratio(z, mu, logvar)  # log p(z) - log q_s(z | x): [S, n]
        fs = model.shared_logits(z.reshape(s * n, -1))
        x_rep = xb.unsqueeze(0).expand(s, *xb.shape).reshape(s * n, *xb.shape[1:])
        for k in learnt.nonzero().flatten().tolist():
            mu_t, logvar_t = model.private_heads[k](h)
            t = _draw(mu_t, logvar_t, s)  # ~ q_k(t | x)
            logits = fs + model.private_logits(t.reshape(s * n, -1), k)  # eq. 1
            log_px = losses.bernoulli_log_likelihood(logits, x_rep).view(s, n)
            log_w = (log_px + ratio_z + log_ratio(t, mu_t, logvar_t)).double()
            out[i : i + n, k] = (torch.logsumexp(log_w, 0) - math.log(s)).float()
    return out
