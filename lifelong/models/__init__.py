"""Model families. REGISTRY maps a family key to (model class, config dataclass)."""

from __future__ import annotations

import dataclasses

from lifelong.models.base import GenerativeModel, LatentBlock, config_from_dict, config_to_dict
from lifelong.models.lmvae import LMVAE, LMVAEConfig

REGISTRY: dict[str, tuple[type[GenerativeModel], type]] = {
    "lmvae": (LMVAE, LMVAEConfig),
}

DESCRIPTIONS = {
    "lmvae": "L-MVAE (paper 000): lifelong mixture of VAE experts, Dirichlet mixing, frozen "
    "depository experts, eq. 7 routing; options: capacity objective, beta annealing, dynamic",
}


def family(key: str) -> tuple[type[GenerativeModel], type]:
    if key not in REGISTRY:
        raise ValueError(f"unknown model {key!r}; valid: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def options(key: str) -> list[tuple[str, object]]:
    """(name, default) of every --set option of a family."""
    _, cfg_cls = family(key)
    return [(f.name, getattr(cfg_cls(), f.name)) for f in dataclasses.fields(cfg_cls)]


def build(key: str, config, arch: dict | None = None) -> GenerativeModel:
    cls, _ = family(key)
    return cls(config, arch)


__all__ = [
    "REGISTRY",
    "DESCRIPTIONS",
    "GenerativeModel",
    "LatentBlock",
    "build",
    "family",
    "options",
    "config_from_dict",
    "config_to_dict",
]
