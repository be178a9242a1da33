"""Model families. REGISTRY maps a family key to (model class, config dataclass)."""

from __future__ import annotations

import dataclasses
import math
import os

import torch

from lifelong.models import plugins
from lifelong.models.base import (
    Capabilities,
    GenerativeModel,
    LatentBlock,
    config_from_dict,
    config_to_dict,
)
from lifelong.models.cpvae import CPVAE
from lifelong.models.ewc import EWC
from lifelong.models.infogan import InfoGAN
from lifelong.models.lgm import LGM
from lifelong.models.lmvae import LMVAE
from lifelong.models.mvae import MVAE
from lifelong.models.vae import VAE

# family key -> (model class, its config dataclass): both read off the class, which declares
# them (`family`, `config_cls`), so a plugin registers the same way.
REGISTRY: dict[str, tuple[type[GenerativeModel], type]] = {
    cls.family: (cls, cls.config_cls) for cls in (LMVAE, VAE, EWC, LGM, CPVAE, MVAE, InfoGAN)
}

DESCRIPTIONS = {
    "lgm": "LGM (paper 001): student-teacher VAE with generative replay (pi = 1/(k+1)), discrete "
    "z_d (Gumbel-softmax, grows per task) + Gaussian z_c, consistency and info-restricting terms",
    "lmvae": "L-MVAE (paper 000): lifelong mixture of VAE experts, Dirichlet mixing, frozen "
    "depository experts, eq. 7 routing; options: capacity objective, beta annealing, dynamic, "
    "supervision=supervised/semi (Gumbel-softmax class encoder, eqs. 18-23)",
    "vae": "Baseline: one VAE (an L-MVAE expert's network) fine-tuned task after task (forgets); "
    "joint=true trains on all tasks at once (JVAE upper bound)",
    "ewc": "Baseline (paper 001 Sec. 5): the VAE plus EWC, diagonal Fisher of the ELBO summed "
    "over tasks, anchored at the last task's weights",
    "cpvae": "CPVAE (paper 004): shared z + private t_k per population (task), additive decoder, "
    "MI-regularised eq. 6 with annealed alpha, eqs. 7-8 population classification; all "
    "populations together unless sequential=true",
    "mvae": "MVAE (paper 002): K encoders + single-layer sub-decoders mixed by Dirichlet weights "
    "into one mix-decoder, dHSIC regulariser beta; dropout=gs/gau prunes components (Sec. V-G); "
    "trained on the union of tasks unless sequential=true",
    "infogan": "Lifelong InfoGAN (paper 003): WGAN-GP generator G(z, c, d) and critic (eq. 2), "
    "auxiliary network S maximising L_MI (eq. 10), generative replay of the frozen previous "
    "generator (eqs. 3-7; replay=false forgets); S infers c and d, z is set to 0",
}


def family(key: str) -> tuple[type[GenerativeModel], type]:
    """(model class, config class) of a family key: built in, registered in this process
    (`register`), or an installed plugin (models/plugins.py; never imported from a name
    alone). ValueError (one line) otherwise."""
    if key in REGISTRY:
        return REGISTRY[key]
    if key in plugins.configured():  # named by this user's LIFELONG_PLUGINS: imported
        register(key)
        return REGISTRY[key]
    found = plugins.from_entry_point(key) if isinstance(key, str) else None
    if found is None:
        raise ValueError(
            plugins.missing(key)
            or f"unknown model {key!r}; valid: {', '.join(sorted(keys()))}, or"
            " package.module:Class for a family of your own"
        )
    REGISTRY[key] = found
    _describe(key)
    return found


def register(key: str, path: str | None = None) -> str:
    """Make a plugin family usable in this process: `path` "package.module:Class" is imported
    (the command line's `--model package.module:Class`; key = path). Returns the key."""
    if key not in REGISTRY:
        REGISTRY[key] = plugins.from_path(path or key)
        _describe(key)
    return key


def _describe(key: str) -> None:
    """A plugin's description: the first line of its class docstring, marked as a plugin."""
    doc = (REGISTRY[key][0].__doc__ or "").strip().split("\n")[0]
    DESCRIPTIONS.setdefault(key, f"plugin {REGISTRY[key][0].__module__}: {doc}".rstrip(": "))


def keys() -> list[str]:
    """Every family key: the built-in ones, then installed plugins (loaded now)."""
    for name in [*plugins.configured(), *plugins.installed()]:
        try:
            family(name)
        except ValueError:
            continue  # a broken plugin is named when it is asked for
    return list(REGISTRY)


def known() -> set[str]:
    """Keys a manifest may name: registered families and installed plugins' names and values
    (matched as strings; nothing is imported)."""
    eps = plugins.installed()
    return set(REGISTRY) | set(eps) | {ep.value for ep in eps.values()} | set(plugins.configured())


def options(key: str) -> list[tuple[str, object]]:
    """(name, default) of every --set option of a family."""
    _, cfg_cls = family(key)
    return [(f.name, getattr(cfg_cls(), f.name)) for f in dataclasses.fields(cfg_cls)]


def build(key: str, config, arch: dict | None = None) -> GenerativeModel:
    cls, _ = family(key)
    return cls.create(config, arch)


# The most tensor elements a model may hold: its float32 weights, Adam's two moments and a
# gradient must fit in half of this machine's memory (a model of 1e9 parameters needs 16 GB).
def max_elements() -> int:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 16 * 2**30
    return memory // 2 // (4 * 4)


MAX_COUNT = 1024  # experts, components, tasks, classes, discrete codes
COUNTS = ("n_tasks", "n_experts", "n_components", "n_classes", "discrete_dim", "latent_dim")


def _check_counts(config, arch: dict) -> None:
    """Counts that set how many modules a model has (not only how big they are) bounded
    before the meta build, whose cost grows with the number of modules."""
    values = {k: getattr(config, k) for k in COUNTS if hasattr(config, k)}
    values |= {f"arch {k}": v for k, v in arch.items()}
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
            raise ValueError(f"{name}={str(value)[:20]} is out of range (0..{MAX_COUNT})")
    shape = getattr(config, "image_shape", (1, 28, 28))
    if len(shape) != 3 or not (1 <= shape[0] <= 4 and all(8 <= s <= 256 for s in shape[1:])):
        raise ValueError(
            f"image_shape {tuple(shape)} is not C x H x W with C <= 4, 8 <= H, W <= 256"
        )


def state_shapes(key: str, config, arch: dict | None = None) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the model `build(key, config, arch)` would make, found
    by building it on the meta device (no memory is spent): a config from a manifest or a
    --set is checked with this before anything is allocated. ValueError (one line) if the
    model would not fit this machine's memory (max_elements)."""
    _check_counts(config, arch or {})
    with torch.device("meta"):
        model = build(key, config, arch)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    n = sum(math.prod(s) for s in shapes.values())
    if n > max_elements():
        raise ValueError(
            f"{key} with these options would hold {n:,} numbers ({4 * n / 2**30:.1f} GB in"
            f" float32); at most {max_elements():,} fit this machine: use smaller sizes"
        )
    return shapes


__all__ = [
    "REGISTRY",
    "DESCRIPTIONS",
    "Capabilities",
    "GenerativeModel",
    "LatentBlock",
    "build",
    "family",
    "options",
    "register",
    "keys",
    "known",
    "state_shapes",
    "max_elements",
    "config_from_dict",
    "config_to_dict",
]
