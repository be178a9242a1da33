"""Several experts of one architecture evaluated in one batched call (torch.func).

A mixture evaluates K experts of identical architecture on the same minibatch (L-MVAE's MELBO,
eq. 2 of paper 000, needs every free expert's ELBO on every sample; eq. 7 needs every expert's).
A Python loop launches K times the kernels; here the experts' parameters are stacked along a new
leading dimension and `torch.func.vmap` runs `functional_call` of one expert over them, so each
layer is one batched kernel (a grouped convolution) for all K.

The experts stay separate modules with their own parameters: freezing (requires_grad off), the
optimizer's per-parameter state and the run format are untouched. The stack is rebuilt from the
live parameters on every call (K small copies) and is differentiable, so gradients flow back to
each trainable expert's own tensors, and a frozen expert's (requires_grad=False) receive none.

Whether it pays depends on the device: on a GPU the loop is launch-bound and batching wins; on
a CPU PyTorch's grouped (transposed) convolutions are slower than K plain ones
(bench/bench_experts.py measures both). `resolve(mode, device)` picks for "auto".
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from lifelong import losses

MODES = ("auto", "loop", "vmap")


def resolve(mode: str, device: torch.device) -> str:
    """ "loop" or "vmap" for this device: "auto" batches on CUDA only (bench_experts.py)."""
    if mode not in MODES:
        raise ValueError(f"expert_batching must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    return mode


def _stack(experts: list[nn.Module]) -> dict[str, torch.Tensor]:
    """name -> [K, ...] stacked parameters and buffers. Plain torch.stack, so the stack stays
    in the autograd graph of each expert's own tensors (torch.func.stack_module_state would
    detach it into new leaves)."""
    states = [dict(e.named_parameters()) | dict(e.named_buffers()) for e in experts]
    return {n: torch.stack([s[n] for s in states]) for n in states[0]}


_TEMPLATES: dict[str, nn.Module] = {}


def _template(module: nn.Module) -> nn.Module:
    """A parameterless copy (meta tensors) of one module, the function vmap calls; one per
    architecture (its repr names every layer's shape), kept off the model so it never enters
    a state_dict."""
    key = f"{type(module).__qualname__}:{module!r}"
    if key not in _TEMPLATES:
        _TEMPLATES[key] = copy.deepcopy(module).to("meta")
    return _TEMPLATES[key]


def vcall(modules: list[nn.Module], *args, in_dims: tuple):
    """modules[k](*args_k) for every k in one vmapped call: outputs stacked on a new dim 0.

    modules: K modules of one architecture; in_dims: per argument, 0 for a [K, ...] tensor
    split across the modules, None for one shared by all."""
    template, state = _template(modules[0]), _stack(modules)

    def one(st, *a):
        return functional_call(template, st, a)

    return vmap(one, in_dims=(0, *in_dims))(state, *args)


class ExpertTerms(nn.Module):
    """One VAE expert's ELBO terms (paper 000, eq. 1) given its noise: rec, kl [N] each."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None):
        mu, logvar = self.expert.encode(x)
        z = mu if eps is None else mu + eps * (0.5 * logvar).exp()  # reparameterise
        logits = self.expert.decode_logits(z)
        return losses.bernoulli_log_likelihood(logits, x), losses.gaussian_kl(mu, logvar)


def expert_terms(
    experts: list[nn.Module], x: torch.Tensor, latent_dim: int, sample: bool = True
) -> dict[str, torch.Tensor]:
    """{"rec", "kl"}: [K, N] each, the terms of K VAEExperts (own bodies) on the same x [N, ...].

    Equal to stacking each expert's `losses.vae_terms` (sample=False: the posterior mean is
    decoded, deterministic and equal up to float rounding; sample=True: one eps ~ N(0, I) per
    expert and sample, drawn here as one [K, N, d] tensor)."""
    eps = torch.randn(len(experts), len(x), latent_dim, device=x.device) if sample else None
    wrapped = [ExpertTerms(e) for e in experts]
    rec, kl = vcall(wrapped, x, eps, in_dims=(None, 0 if sample else None))
    return {"rec": rec, "kl": kl}
