"""Directions to slide (issue 18, part 3): latent-space cartography along the difference of
two groups' mean codes.

A group is a class (its images in every task's test data, by class name) or a task (all its
test images). Its mean code is the mean, over the group's images, of the encoder's posterior
means in one expert's latent space (a non-mixture's whole code), on the Gaussian blocks a
traversal of that expert moves (`direction_blocks`): a mixture's expert block, a VAE's z,
CPVAE's shared z (its private codes t_k are per population), LGM's z_c (z_d is categorical),
InfoGAN's c and z as its S network infers them (z is not inferred: 0 for every image, so a
direction never moves it). Categorical blocks are never moved: they stay at the traversal
panel's values.

Positions along a direction are the parameter t of

    code(t) = from_mean + t * (to_mean - from_mean)          anchor "means"
    code(t) = panel_code + t * (to_mean - from_mean)         anchor "code"

so t = 0 is the "from" group's mean (or the panel's code) and t = 1 the "to" group's mean (or
the panel's code moved by the whole difference: attribute-vector arithmetic, as White 2016's
"smile vector"). A code's own position is its projection: t = <c - from_mean, v> / |v|^2.

Shapes: images x [N, C, H, W] in [0, 1]; a Direction's vectors are [D] (its blocks'
variables concatenated in `blocks` order, D = sum(dims)); codes are block -> [n, d].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lifelong.explore import images
from lifelong.explore.traversal import blocks_for

T_RANGE = (-0.5, 1.5)  # the slider's and the grid's span of t
GROUPINGS = ("class", "task")
MAX_PER_GROUP = 2048  # images a group's mean is taken over (the first ones, in data order)


@dataclass
class Direction:
    """A direction in `expert`'s latent space (None: a non-mixture's code)."""

    expert: int | None
    blocks: list[str]  # the Gaussian blocks it moves
    dims: list[int]  # their dimensions
    start: torch.Tensor  # [D] float32: the "from" group's mean code
    end: torch.Tensor  # [D] float32: the "to" group's mean code
    counts: tuple[int, int] = field(default=(0, 0))  # images each mean is over

    @property
    def vector(self) -> torch.Tensor:
        """[D]: end - start."""
        return self.end - self.start

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def is_zero(self, rtol: float = 1e-6) -> bool:
        """Whether the two means coincide (the same group twice, or groups the encoder does
        not tell apart): there is nothing to slide along."""
        scale = max(1.0, float(self.start.norm()), float(self.end.norm()))
        return self.norm <= rtol * scale

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[n, D] -> block -> [n, d]."""
        return dict(zip(self.blocks, flat.split(self.dims, dim=1), strict=True))


def direction_blocks(model, expert: int | None) -> list:
    """The Gaussian latent blocks a direction moves in `expert`'s space: those a traversal of
    it moves (traversal.blocks_for), the shared ones only where the code also has per-owner
    blocks (CPVAE: z, not the populations' t_k)."""
    gauss = [b for b in blocks_for(model, expert) if b.kind == "gaussian"]
    shared = [b for b in gauss if b.owner == "shared"]
    return shared or gauss


def group_names(tests: list, task_names: list[str], by: str) -> list[str]:
    """The groups a direction can join: class names (each once, in natural order) or tasks
    ("0: digits:classes=0-4", ...)."""
    if by == "task":
        return [f"{j}: {name}" for j, name in enumerate(task_names)]
    if by != "class":
        raise ValueError(f"group by {by!r}: valid are {', '.join(GROUPINGS)}")
    names = set()
    for data in tests:  # the classes present (a class subset lists every class of its set)
        names |= {_class_name(data, y) for y in data.y.unique().tolist()}
    return sorted(names, key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n))


def _class_name(data, y: int) -> str:
    return str(data.classes[y]) if y < len(data.classes) else str(y)


def group_images(tests: list, by: str, name: str, limit: int = MAX_PER_GROUP) -> torch.Tensor:
    """[N, C, H, W]: the first `limit` images of group `name` (group_names' spelling): a
    task's test images, or a class's images over every task. Empty [0, ...] if none."""
    if by == "task":
        j = int(name.split(":", 1)[0])
        return tests[j].x[:limit]
    parts = []
    for data in tests:
        ids = [y for y in data.y.unique().tolist() if _class_name(data, y) == name]
        if ids:
            parts.append(data.x[torch.isin(data.y, torch.tensor(ids))])
    if not parts:
        first = tests[0].x
        return first.new_zeros((0, *first.shape[1:]))
    return torch.cat(parts)[:limit]


@torch.no_grad()
def encode_blocks(model, x: torch.Tensor, expert: int | None, blocks: list[str], batch=512):
    """x [N, C, H, W] -> posterior means [N, D] float32 on the CPU, `blocks` concatenated,
    through `expert` (a mixture's) or the model's encoder; computed on the model's device a
    batch at a time. NotImplementedError where the family has no encoder."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(model.device)
        post = model.encode(xb, expert) if model.experts() else model.encode(xb)
        out.append(torch.cat([post[b]["mu"] for b in blocks], dim=1).float().cpu())
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def between(model, x_from: torch.Tensor, x_to: torch.Tensor, expert: int | None) -> Direction:
    """The direction from the mean code of images x_from [N1, C, H, W] to that of x_to
    [N2, C, H, W] in `expert`'s space. ValueError if a group has no image or the expert no
    Gaussian block; NotImplementedError if the family has no encoder."""
    blocks = direction_blocks(model, expert)
    if not blocks:
        raise ValueError("this latent space has no Gaussian variables to move along")
    if not len(x_from) or not len(x_to):
        raise ValueError("a group has no image")
    names = [b.name for b in blocks]
    start = encode_blocks(model, x_from, expert, names).mean(0)
    end = encode_blocks(model, x_to, expert, names).mean(0)
    return Direction(expert, names, [b.dim for b in blocks], start, end, (len(x_from), len(x_to)))


def codes_along(
    d: Direction, base: dict[str, list[float]], ts, anchor: str = "means"
) -> dict[str, torch.Tensor]:
    """Codes block -> [n, d] at the positions ts ([n]): d's blocks at from_mean + t * v
    (anchor "means") or base + t * v (anchor "code"); every other block of `base` (the
    panel's code, block -> [d]: categorical ones, CPVAE's t_k) held at its value."""
    ts = torch.as_tensor(np.asarray(ts, dtype=np.float32)).view(-1, 1)
    if anchor == "means":
        origin = d.start
    elif anchor == "code":
        origin = torch.tensor([v for b in d.blocks for v in base[b]], dtype=torch.float32)
    else:
        raise ValueError(f"anchor {anchor!r}: valid are means, code")
    moved = d.split(origin[None] + ts * d.vector[None])
    n = len(ts)
    out = {}
    for name, vals in base.items():
        out[name] = moved[name] if name in moved else torch.tensor([vals]).float().repeat(n, 1)
    return out


@torch.no_grad()
def decode_along(model, d: Direction, base: dict[str, list[float]], ts, anchor="means"):
    """Images [n, C, H, W] (on the CPU) at the positions ts along d, decoded in one batch on
    the model's device (codes_along for the codes)."""
    codes = {k: v.to(model.device) for k, v in codes_along(d, base, ts, anchor).items()}
    out = model.decode(codes, d.expert) if model.experts() else model.decode(codes)
    return out.cpu()


@torch.no_grad()
def positions(model, x: torch.Tensor, d: Direction, batch: int = 512) -> torch.Tensor:
    """Each image's position along d: its code's projection t = <c - start, v> / |v|^2,
    [N] float32 (0: at the "from" mean's level, 1: at the "to" mean's). ValueError for a
    zero direction."""
    if d.is_zero():
        raise ValueError("the direction is zero: its two means coincide")
    c = encode_blocks(model, x, d.expert, d.blocks, batch)
    v = d.vector
    return (c - d.start[None]) @ v / (v @ v)


def point_positions(model, tests: list, task, index, d: Direction, batch: int = 512):
    """`positions` of the images a map's points name (task [N], index [N] into
    tests[task].x), read a batch at a time (a map of 70,000 points never gathers its images
    at once): [N] float32 in point order."""
    out = torch.zeros(len(task))
    for j in torch.as_tensor(task).unique().tolist():
        rows = torch.nonzero(torch.as_tensor(task) == j).flatten()
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            out[chunk] = positions(model, tests[j].x[torch.as_tensor(index)[chunk]], d, batch)
    return out


def binned(values: torch.Tensor, lo: float, hi: float, bins: int) -> tuple[list[str], torch.Tensor]:
    """Continuous values [N] as `bins` equal bins over lo..hi, the ends open (a value below
    lo falls in the first bin): (names ["≤ -0.42", "-0.42..-0.33", ..., "≥ 1.42"], group
    [1, N] long), the latent map's groups for a continuous colour scale."""
    edges = np.linspace(lo, hi, bins + 1)
    inner = torch.as_tensor(edges[1:-1], dtype=torch.float32)
    group = torch.bucketize(values.float().contiguous(), inner, right=True)
    names = [f"≤ {edges[1]:.2f}"]
    names += [f"{edges[k]:.2f}..{edges[k + 1]:.2f}" for k in range(1, bins - 1)]
    names.append(f"≥ {edges[-2]:.2f}")
    return names, group.view(1, -1)


def grid_png(imgs: torch.Tensor, scale: int = 2) -> bytes:
    """The swept row as one PNG: images [n, C, H, W] side by side."""
    return images.png_bytes(images.grid(imgs, len(imgs), scale=scale))


def sweep_gif(imgs: torch.Tensor, scale: int = 3) -> bytes:
    """The sweep as an animated GIF, one frame per position, there and back."""
    return images.gif_bytes([images.grid(im[None], 1, pad=0, scale=scale) for im in imgs])


def sweep_npz(d: Direction, ts, codes: dict[str, torch.Tensor], imgs: torch.Tensor) -> bytes:
    """The sweep for analysis: t [n], each block's codes [n, d], images uint8 [n, C, H, W],
    the two means [D] and the blocks they cover."""
    import io

    buf = io.BytesIO()
    arrays = {f"code_{k}": v.numpy() for k, v in codes.items()}
    np.savez_compressed(
        buf,
        t=np.asarray(ts, dtype=np.float32),
        images=(imgs.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
        from_mean=d.start.numpy(),
        to_mean=d.end.numpy(),
        blocks=np.array(d.blocks),
        **arrays,
    )
    return buf.getvalue()
