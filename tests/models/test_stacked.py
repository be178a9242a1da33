"""Experts batched with torch.func (lifelong/models/stacked.py): the same terms, the same
gradients, nothing for frozen experts, as the per-expert loop."""

from __future__ import annotations

import pytest
import torch

from lifelong import losses
from lifelong.models import build, stacked
from lifelong.models.lmvae import LMVAEConfig
from lifelong.models.nets import VAEExpert
from tests.conftest import synthetic_task


def _loop_terms(experts, x):
    out = []
    for e in experts:
        mu, logvar = e.encode(x)
        out.append(losses.vae_terms(e.decode_logits(mu), x, mu, logvar))
    return out


def test_vmapped_terms_and_gradients_equal_the_loop_and_skip_frozen_experts():
    torch.manual_seed(0)
    experts = [VAEExpert((1, 28, 28), 4, channels=8, hidden=16) for _ in range(3)]
    for p in experts[1].parameters():
        p.requires_grad_(False)
    x = synthetic_task("hbar", 8).x
    batched = stacked.expert_terms(experts, x, 4, sample=False)
    loop = _loop_terms(experts, x)
    for name in ("rec", "kl"):
        want = torch.stack([t[name] for t in loop])
        assert batched[name].shape == (3, 8)
        assert torch.allclose(batched[name], want, rtol=1e-5, atol=1e-3)
    weights = torch.tensor([0.2, 0.3, 0.5])[:, None]
    (weights * (batched["rec"] - batched["kl"])).sum().backward()
    grads = [[p.grad for p in e.parameters()] for e in experts]
    for e in experts:
        for p in e.parameters():
            p.grad = None
    sum(w * (t["rec"] - t["kl"]).sum() for w, t in zip(weights[:, 0], loop, strict=True)).backward()
    for k, e in enumerate(experts):
        for g, p in zip(grads[k], e.parameters(), strict=True):
            if k == 1:
                assert g is None and p.grad is None  # frozen: no gradient either way
            else:
                assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-5)


def test_sampled_terms_use_independent_noise_per_expert():
    torch.manual_seed(0)
    expert = VAEExpert((1, 28, 28), 4, channels=8, hidden=16)
    x = synthetic_task("hbar", 4).x
    terms = stacked.expert_terms([expert, expert], x, 4, sample=True)
    # The same expert twice: equal KL (noise-free), different reconstructions (own eps each).
    assert torch.allclose(terms["kl"][0], terms["kl"][1])
    assert not torch.allclose(terms["rec"][0], terms["rec"][1])


def test_lmvae_routes_the_same_in_both_modes_and_rejects_unknown_modes():
    torch.manual_seed(0)
    loop = build("lmvae", LMVAEConfig(n_tasks=3, latent_dim=4, expert_batching="loop")).eval()
    vmapped = build("lmvae", LMVAEConfig(n_tasks=3, latent_dim=4, expert_batching="vmap")).eval()
    vmapped.load_state_dict(loop.state_dict())
    x = torch.cat([synthetic_task("hbar", 8).x, synthetic_task("vbar", 8).x])
    with torch.no_grad():
        assert torch.allclose(
            loop.expert_elbos(x, sample=False), vmapped.expert_elbos(x, sample=False), atol=1e-3
        )
        assert torch.equal(loop.select(x), vmapped.select(x))
    assert stacked.resolve("auto", torch.device("cpu"), 6) == "loop"
    assert stacked.resolve("auto", torch.device("cuda"), 2) == "loop"
    assert stacked.resolve("auto", torch.device("cuda"), 4) == "vmap"
    assert stacked.resolve("vmap", torch.device("cpu"), 2) == "vmap"
    with pytest.raises(ValueError, match="expert_batching must be one of auto, loop, vmap"):
        build("lmvae", LMVAEConfig(n_tasks=2, expert_batching="fast"))


def test_mvae_components_batched_give_the_loops_objective_and_gradients():
    from lifelong.models.mvae import MVAEConfig

    torch.manual_seed(0)
    cfg = dict(n_tasks=1, n_components=3, latent_dim=4, channels=8, hidden=16)
    loop = build("mvae", MVAEConfig(**cfg, expert_batching="loop"))
    vmapped = build("mvae", MVAEConfig(**cfg, expert_batching="vmap"))
    vmapped.load_state_dict(loop.state_dict())
    x = synthetic_task("hbar", 8).x
    grads = []
    for model in (loop, vmapped):
        torch.manual_seed(1)  # the same noise: z and w are drawn outside the batched calls
        total = model.loss({"x": x}, 0)["total"]
        total.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        grads[-1]["total"] = total.detach()
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-4), name
