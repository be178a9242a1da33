"""Importance-weighted ELBO (IWAE bound, Burda et al. 2016) for any family with an encoder.

    log p(x) >= IWELBO_k(x) = E[ log 1/k sum_{i=1..k} p(x | z_i) p(z_i) / q(z_i | x) ],
    z_i ~ q(z | x)

It equals the ELBO for k = 1, rises with k and tends to log p(x) as k grows, so -IWELBO_k is
the usual NLL estimate. The bound is built from the interface alone (DESIGN.md, "Model
interface"), under the assumptions the families share:

- q: `model.encode(x, expert)` blocks. Gaussian blocks ({"mu", "logvar"}) are sampled by
  reparameterisation; categorical blocks ({"logits"}) are sampled exactly (a one-hot code, not a
  relaxed Gumbel-softmax one), so q(c|x) is the softmax probability of the drawn category.
- p(z): N(0, I) for Gaussian blocks, uniform over the `dim` categories for categorical ones
  (the priors of L-MVAE, LGM, CPVAE, the VAE baselines).
- p(x|z): a Bernoulli decoder with logits `model.decode_logits(codes, expert)` (by default
  computed from `decode`'s means, clamped to 1e-7 from 0 and 1; a family with logits
  returns them and avoids the float32 saturation of sigmoid).
- mixtures: each sample is scored by its routed expert (`model.select(x)`, paper 000 eq. 7),
  i.e. the bound of the component that explains it, as in the families' own `score`.

A family declares otherwise in its `capabilities.likelihood` (models/base.py):
- "own": `log_likelihood_is(x, k) -> [N]` is its own importance-sampled estimate (CPVAE's
  eqs. 7-8, a model with another prior or decoder); used as is.
- "none": an implicit model (the InfoGAN generator): no bound is computed.
"""

from __future__ import annotations

import math

import torch

from lifelong import losses

LOG_2PI = math.log(2 * math.pi)


class Unsupported(ValueError):
    """The model cannot provide this metric (no encoder, implicit likelihood, ...)."""


def _block_kinds(model) -> dict[str, str]:
    try:
        return {b.name: b.kind for b in model.latent_blocks()}
    except NotImplementedError:
        return {}


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dim."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


def _sample_blocks(post: dict, kinds: dict[str, str], k: int):
    """Draw k codes per sample from every block: codes {name: [k*N, dim]} and
    log p(z) - log q(z|x) summed over blocks [k, N]."""
    codes, log_ratio = {}, 0.0
    for name, params in post.items():
        kind = kinds.get(name, "categorical" if "logits" in params else "gaussian")
        if kind == "gaussian":
            mu, logvar = params["mu"], params["logvar"]
            eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
            log_q = _log_normal(z, mu, logvar)
            log_p = -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)
        elif kind == "categorical":
            logits = params["logits"]
            log_probs = torch.log_softmax(logits, dim=-1)
            idx = torch.distributions.Categorical(logits=logits).sample((k,))  # [k, N]
            z = torch.nn.functional.one_hot(idx, logits.shape[-1]).to(logits.dtype)
            log_q = log_probs.expand(k, -1, -1).gather(-1, idx[..., None]).squeeze(-1)
            log_p = torch.full_like(log_q, -math.log(logits.shape[-1]))
        else:
            raise Unsupported(f"latent block {name!r} has unknown kind {kind!r}")
        codes[name] = z.reshape(-1, z.shape[-1])
        log_ratio = log_ratio + log_p - log_q
    return codes, log_ratio


def _bernoulli(model, codes: dict, x_rep: torch.Tensor, expert) -> torch.Tensor:
    return losses.bernoulli_log_likelihood(model.decode_logits(codes, expert), x_rep)


@torch.no_grad()
def _iwelbo_one(model, x: torch.Tensor, k: int, expert, chunk: int) -> torch.Tensor:
    """IWELBO_k of `x` [N, ...] under one expert (or the whole model when expert is None)."""
    post = model.encode(x, expert=expert) if expert is not None else model.encode(x)
    if not post:
        raise Unsupported(f"{model.family}: encode returned no latent blocks")
    kinds = _block_kinds(model)
    n = len(x)
    log_w = []
    per = max(1, chunk // max(n, 1))  # importance samples per decoder call
    for start in range(0, k, per):
        kk = min(per, k - start)
        codes, log_ratio = _sample_blocks(post, kinds, kk)
        x_rep = x.unsqueeze(0).expand(kk, *x.shape).reshape(kk * n, *x.shape[1:])
        log_px = _bernoulli(model, codes, x_rep, expert).view(kk, n)
        log_w.append(log_px + log_ratio)
    log_w = torch.cat(log_w, dim=0)  # [k, N]
    return torch.logsumexp(log_w.double(), dim=0).float() - math.log(k)


@torch.no_grad()
def iwelbo(model, x: torch.Tensor, k: int = 50, expert: int | None = None, chunk: int = 4096):
    """Per-sample importance-weighted ELBO in nats (higher is better): x [N, C, H, W] -> [N].

    k: importance samples (k = 1 is a one-sample ELBO); expert: score every sample with this
    mixture component instead of the routed one; chunk: images per decoder call (memory).
    Raises Unsupported for models without a likelihood or an encoder."""
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    kind = model.capabilities.likelihood
    if kind == "own" and expert is None:
        return model.log_likelihood_is(x, k)
    if kind == "none":
        raise Unsupported(f"{model.family} is an implicit model: it has no likelihood to bound")
    try:
        if expert is not None or not model.experts():
            return _iwelbo_one(model, x, k, expert, chunk)
        chosen = model.select(x)
        out = torch.empty(len(x), device=x.device)
        for e in chosen.unique().tolist():
            rows = chosen == e
            out[rows] = _iwelbo_one(model, x[rows], k, int(e), chunk)
        return out
    except NotImplementedError:
        raise Unsupported(f"{model.family} has no encoder/decoder pair to bound with") from None


def nll(model, x: torch.Tensor, k: int = 50, expert: int | None = None) -> torch.Tensor:
    """Negative log-likelihood estimate -IWELBO_k in nats: [N] (lower is better)."""
    return -iwelbo(model, x, k, expert)
