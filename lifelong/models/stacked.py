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

Whether it pays depends on the device and K. Measured (bench/bench_train.py, batch 128 of
digits, default networks; README "GPU figures"): on a CPU PyTorch's grouped (transposed)
convolutions are slower than K plain ones (L-MVAE K=2: 0.61x the loop, MVAE K=4: 0.63x); on an
H200, where these small networks are bound by kernel launches and Python, L-MVAE with K=2 ran
8.4 ms a step batched against 5.8 ms looped, MVAE with K=4 12.3-13.0 ms against 13.5-14.4.
So "auto" batches on CUDA from K=4 experts up and loops otherwise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from lifelong import losses

MODES = ("auto", "loop", "vmap")


AUTO_MIN_EXPERTS = 4  # "auto": fewest experts for which batching beat the loop on CUDA


def resolve(mode: str, device: torch.device, n_experts: int = AUTO_MIN_EXPERTS) -> str:
    """Loop or vmap for K = n_experts on this device ("auto": see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"expert_batching must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        batch = device.type == "cuda" and n_experts >= AUTO_MIN_EXPERTS
        return "vmap" if batch else "loop"
    return mode


def _stack(experts: list[nn.Module]) -> dict[str, torch.Tensor]:
    """name -> [K, ...] stacked parameters and buffers. Plain torch.stack, so the stack stays
    in the autograd graph of each expert's own tensors (torch.func.stack_module_state would
    detach it into new leaves)."""
    states = [dict(e.named_parameters()) | dict(e.named_buffers()) for e in experts]
    return {n: torch.stack([s[n] for s in states]) for n in states[0]}


def vcall(modules: list[nn.Module], *args, in_dims: tuple):
    """modules[k](*args_k) for every k in one vmapped call: outputs stacked on a new dim 0.

    modules: K modules of one architecture; in_dims: per argument, 0 for a [K, ...] tensor
    split across the modules, None for one shared by all. The first module is the function:
    functional_call swaps the stacked state in for the duration of the call."""
    state = _stack(modules)

    def one(st, *a):
        return functional_call(modules[0], st, a)

    return vmap(one, in_dims=(0, *in_dims))(state, *args)


class ExpertTerms(nn.Module):
    """One VAE expert's ELBO terms (paper 000, eq. 1) given its noise: {"rec", "kl"} [N]."""

    def __init__(self, expert: nn.Module):
        super().__init__()
        self.expert = expert

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None) -> dict[str, torch.Tensor]:
        mu, logvar = self.expert.encode(x)
        # losses.reparameterise with the noise drawn outside (vmap's randomness rules)
        z = mu if eps is None else mu + eps * (0.5 * logvar).exp()
        return losses.vae_terms(self.expert.decode_logits(z), x, mu, logvar)


def expert_terms(
    experts: list[nn.Module], x: torch.Tensor, latent_dim: int, sample: bool = True
) -> dict[str, torch.Tensor]:
    """{"rec", "kl"}: [K, N] each, the terms of K VAEExperts (own bodies) on the same x [N, ...].

    Equal to stacking each expert's `losses.vae_terms` (sample=False: the posterior mean is
    decoded, deterministic and equal up to float rounding; sample=True: one eps ~ N(0, I) per
    expert and sample, drawn here as one [K, N, d] tensor)."""
    eps = torch.randn(len(experts), len(x), latent_dim, device=x.device) if sample else None
    wrapped = [ExpertTerms(e) for e in experts]
    return vcall(wrapped, x, eps, in_dims=(None, 0 if sample else None))
