"""Latent traversal (paper 000 Figs. 7-8): decode one input's code with single variables moved.

The page picks an input (a test image or a prior sample) and an expert, shows one slider per
latent variable of that expert's blocks, and the grid of every variable swept over -3..3 with
the others held at the input's posterior mean.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lifelong.explore import images


@dataclass
class Start:
    """Where a traversal starts: the expert and its code values (block -> [d] floats)."""

    expert: int | None
    codes: dict[str, list[float]]
    routed: bool = False


def blocks_for(model, expert: int | None):
    """Latent blocks a traversal of `expert` moves: those it owns plus shared ones."""
    blocks = model.latent_blocks()
    if expert is None:
        return blocks
    return [b for b in blocks if b.owner in (expert, "shared", None)]


@torch.no_grad()
def start_from_image(model, x: torch.Tensor, expert: int | None = None) -> Start:
    """x [1, C, H, W]: posterior means through `expert`, or the expert eq. 7 selects for x."""
    routed = expert is None and bool(model.experts())
    if routed:
        expert = int(model.select(x)[0])
    post = model.encode(x, expert) if model.experts() else model.encode(x)
    codes = {}
    for b in blocks_for(model, expert):
        p = post[b.name]
        value = p["mu"] if "mu" in p else torch.softmax(p["logits"], dim=-1)
        codes[b.name] = value[0].tolist()
    return Start(expert, codes, routed)


def start_from_prior(model, expert: int | None, seed: int = 0) -> Start:
    """A draw from the prior N(0, I) (one-hot for categorical blocks), reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    codes = {}
    for b in blocks_for(model, expert):
        if b.kind == "categorical":
            v = torch.zeros(b.dim)
            v[int(torch.randint(b.dim, (), generator=g))] = 1.0
        else:
            v = torch.randn(b.dim, generator=g)
        codes[b.name] = v.tolist()
    return Start(expert, codes)


def panel_codes(model, start: Start) -> dict[str, list[float]]:
    """The slider panel's starting values: Gaussian variables clipped to the sliders' -3..3,
    a categorical block as the one-hot vector of its most probable category (the panel's
    selector; what `reconstruct` decodes for InfoGAN's d and LGM's z_d)."""
    kinds = {b.name: b.kind for b in model.latent_blocks()}
    out = {}
    for name, base in start.codes.items():
        if kinds.get(name) == "categorical":
            out[name] = [0.0] * len(base)
            out[name][int(np.argmax(base))] = 1.0
        else:
            out[name] = [float(np.clip(v, -3, 3)) for v in base]
    return out


def checked_values(
    value, template: dict[str, list[float]], kinds: dict[str, str]
) -> dict[str, list[float]] | None:
    """Codes a browser sent back (untrusted JSON), or None unless they have exactly the
    template's blocks and sizes, finite Gaussian values (clipped to -3..3) and one-hot
    categorical blocks."""
    if not isinstance(value, dict) or set(value) != set(template):
        return None
    out = {}
    for name, base in template.items():
        vals = value[name]
        if not isinstance(vals, list) or len(vals) != len(base):
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            return None
        arr = np.asarray(vals, dtype=np.float64)
        if not np.isfinite(arr).all():
            return None
        if kinds.get(name) == "categorical":
            if sorted(arr.tolist()) != [0.0] * (len(arr) - 1) + [1.0]:
                return None
            out[name] = arr.tolist()
        else:
            out[name] = np.clip(arr, -3, 3).tolist()
    return out


def codes_text(codes: dict[str, list[float]]) -> str:
    """Codes for an address: `z1:0.82,-0.05;t0:1,0` (three decimals, trailing zeros cut)."""

    def num(v: float) -> str:
        text = f"{v:.3f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    return ";".join(f"{n}:{','.join(num(v) for v in vals)}" for n, vals in codes.items())


def codes_from_text(text: str | None) -> dict | None:
    """`codes_text`'s inverse (untrusted: None for anything malformed); check the result with
    `checked_values` against the blocks it is meant for."""
    if not text or len(text) > 20_000:
        return None
    out = {}
    try:
        for part in text.split(";"):
            name, _, vals = part.partition(":")
            out[name] = [float(v) for v in vals.split(",")]
    except ValueError:
        return None
    return out


@torch.no_grad()
def decode(model, codes: dict[str, list[float]], expert: int | None) -> torch.Tensor:
    """Codes (block -> [d]) -> one image [1, C, H, W] in [0, 1]."""
    dev = model.device
    tensors = {k: torch.tensor([v], dtype=torch.float32, device=dev) for k, v in codes.items()}
    return model.decode(tensors, expert) if model.experts() else model.decode(tensors)


def _native(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """fn(x) with oneDNN (mkldnn) off for its duration. For one image on a CPU that sat idle
    between two slider steps, PyTorch's native (transposed) convolutions are faster than
    oneDNN's: 0.47-0.57 ms against 0.72-0.74 ms for the default decoder in a fresh thread
    (a fragment rerun's), the same values to 5e-7. The switch is process-wide while it lasts:
    a convolution of another thread meanwhile also runs natively (slower, not wrong)."""
    if not x.device.type == "cpu":
        return fn(x)
    before = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        return fn(x)
    finally:
        torch._C._set_mkldnn_enabled(before)


class _FlatPixels(torch.nn.Module):
    """model.decode of one expert as a module of one flat code [1, D] (blocks concatenated in
    `names` order) returning uint8 pixels [H, W] or [H, W, 3] (as images.upscale(., 1)), so
    torch.jit.trace can record decode and conversion in one graph."""

    def __init__(self, model, names: list[str], dims: list[int], expert: int | None):
        super().__init__()
        self.model, self.names, self.dims, self.expert = model, names, dims, expert

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        codes = dict(zip(self.names, flat.split(self.dims, dim=1), strict=True))
        if self.model.experts():
            img = self.model.decode(codes, self.expert)
        else:
            img = self.model.decode(codes)
        arr = (img[0].float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return arr[0] if arr.shape[0] == 1 else arr.permute(1, 2, 0)


_LIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: decoder}


def live_decoder(model, codes: dict[str, list[float]], expert: int | None) -> Callable:
    """A decoder for the slider panel: codes (block -> [d], the blocks of `codes`) -> the
    image as uint8 pixels [H, W] or [H, W, 3] (images.upscale(decode(...)[0], 1)), traced
    once per model and expert (TorchScript), decode and conversion in one graph.

    A slider step decodes one image, so the cost is per-op overhead, not arithmetic: the
    traced graph skips each nn.Module call's Python (~0.6 ms instead of ~0.8 ms for the
    default L-MVAE decoder on a CPU that was idle between steps), and it runs with oneDNN off
    (`_native`: ~0.5 ms). Tracing is checked against eager decoding on two codes; a family
    whose decode cannot be traced faithfully (or raises) keeps the eager `decode` (the
    returned callable then has no `traced` attribute). Cached per model (weakly), so the
    app's cached models trace once per expert.
    """
    names, dims = list(codes), [len(v) for v in codes.values()]
    key = (tuple(names), tuple(dims), expert)
    # Freezing folds the weights into the graph: a model trained further (its parameters'
    # in-place version counters moved) gets traced again.
    version = tuple(p._version for p in model.parameters())
    cache = _LIVE.setdefault(model, {})
    if key not in cache or cache[key][0] != version:
        fn = _trace(model, names, dims, expert)
        if fn is None:

            def fn(c: dict[str, list[float]]) -> np.ndarray:
                return images.upscale(decode(model, c, expert)[0], 1)

        cache[key] = (version, fn)
    return cache[key][1]


def _trace(model, names: list[str], dims: list[int], expert: int | None) -> Callable | None:
    flat = _FlatPixels(model, names, dims, expert)
    dev = model.device
    g = torch.Generator().manual_seed(0)
    probes = [torch.zeros(1, sum(dims)), torch.randn(1, sum(dims), generator=g)]
    probes = [p.to(dev) for p in probes]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings for Python-side branches
            traced = torch.jit.trace(flat, probes[0], check_trace=False)
            traced = torch.jit.freeze(traced.eval())
            # Native and oneDNN convolutions differ by ~5e-7, which may round a pixel either
            # way: at most one grey level apart from eager decoding.
            for p in probes:
                diff = _native(traced, p).int() - flat(p).int()
                if diff.abs().max() > 1:
                    return None
    except Exception:  # noqa: BLE001 - any tracing failure means: decode eagerly
        return None

    @torch.no_grad()
    def run(codes: dict[str, list[float]]) -> np.ndarray:
        values = [v for n in names for v in codes[n]]
        x = torch.tensor([values], dtype=torch.float32, device=dev)
        return _native(traced, x).cpu().numpy()

    run.traced = True
    return run


@torch.no_grad()
def informativeness(model, x: torch.Tensor, expert: int | None) -> dict[str, list[float]]:
    """Mean KL(q(z_i|x) || N(0, 1)) per Gaussian variable over the images x [N, C, H, W]:
    block -> [d] nats. Variables the model ignores sit at ~0 (the posterior equals the prior);
    sorting by it puts the variables that carry information first (as disentanglement_lib
    and beta-VAE papers order their traversals)."""
    post = model.encode(x, expert) if model.experts() else model.encode(x)
    out = {}
    for b in blocks_for(model, expert):
        p = post.get(b.name, {})
        if b.kind == "gaussian" and "mu" in p:
            mu, lv = p["mu"], p["logvar"]
            out[b.name] = (0.5 * (mu**2 + lv.exp() - 1 - lv)).mean(0).tolist()
    return out


@torch.no_grad()
def posterior_ranges(model, x: torch.Tensor, expert: int | None) -> dict[str, list[tuple]]:
    """disentanglement_lib's data-driven traversal range: per Gaussian variable, the min and
    max of its posterior mean over the images x [N, C, H, W]. block -> [(lo, hi)] * d."""
    post = model.encode(x, expert) if model.experts() else model.encode(x)
    out = {}
    for b in blocks_for(model, expert):
        p = post.get(b.name, {})
        if b.kind == "gaussian" and "mu" in p:
            lo, hi = p["mu"].min(0).values.tolist(), p["mu"].max(0).values.tolist()
            out[b.name] = list(zip(lo, hi, strict=True))
    return out


@torch.no_grad()
def sweep(
    model,
    start: Start,
    values,
    order: list[tuple[str, int]] | None = None,
    ranges: dict[str, list[tuple]] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Gaussian variables of the start's blocks swept one per row, the others held at the start.

    `values` ([n]) are the positions along each row: used as they are (e.g. prior -3..3), or,
    when `ranges` gives a (lo, hi) per variable, mapped linearly from their own span onto it.
    `order` lists the (block, index) rows to draw (e.g. sorted by `informativeness`); default
    every Gaussian variable in index order. Returns images [rows * n, C, H, W] (row-major) and
    the row labels ("z0[3]", ...). All rows are decoded in one batch.
    """
    values = torch.as_tensor(np.asarray(values, dtype=np.float32))
    n = len(values)
    kinds = {b.name: b.kind for b in model.latent_blocks()}
    if order is None:
        order = [
            (name, i)
            for name, base in start.codes.items()
            if kinds.get(name) == "gaussian"
            for i in range(len(base))
        ]
    if not order:
        return torch.empty(0), []
    span = (values - values[0]) / (values[-1] - values[0]) if n > 1 else torch.zeros(1)
    codes = {k: torch.tensor(v).repeat(len(order) * n, 1) for k, v in start.codes.items()}
    for r, (name, i) in enumerate(order):
        if ranges is not None:
            lo, hi = ranges[name][i]
            row = lo + span * (hi - lo)
        else:
            row = values
        codes[name][r * n : (r + 1) * n, i] = row
    codes = {k: v.to(model.device) for k, v in codes.items()}
    out = model.decode(codes, start.expert) if model.experts() else model.decode(codes)
    return out.cpu(), [f"{name}[{i}]" for name, i in order]


def sweep_png(imgs: torch.Tensor, n_values: int, scale: int = 2) -> bytes:
    return images.png_bytes(images.grid(imgs, n_values, scale=scale))


def sweep_gif(imgs: torch.Tensor, n_values: int, scale: int = 2) -> bytes:
    """Frame t shows every variable at the t-th value side by side (one column per variable)."""
    per_var = imgs.view(-1, n_values, *imgs.shape[1:])  # [V, n, C, H, W]
    n_vars = per_var.shape[0]
    frames = [images.grid(per_var[:, t], min(n_vars, 10), scale=scale) for t in range(n_values)]
    return images.gif_bytes(frames)
