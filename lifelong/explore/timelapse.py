"""The Latent map's time-lapse: every test image's codes at every snapshot, placed in one
projection fitted once for the whole run (embedding.fit_over_snapshots), so stepping through
the snapshots shows the codes move (latent drift) instead of a new, unrelated picture each
time; the drift matrix (metrics.drift) says the same in numbers.

`python -m lifelong eval RUN --metrics drift --write` stores the default time-lapse (PCA of
the drift's codes: each task's images through the expert holding it for mixtures, the
encoder otherwise) beside the last snapshot as `timelapse-NN.safetensors`:

    task, index, label  int32 [N]     index = position in the task's full test split
    expert              int16 [S, N]  the expert that coded the image at each snapshot (-1)
    xy                  float16 [S, N, 2] (float32 where a coordinate exceeds float16's range;
                        runs made before store float32; readers take either)
    snapshots           int32 [S]     after_task of each frame
    drift               float32 [S, T] metrics.drift of the same codes (NaN: undefined)

The page reads it for its first paint; other spaces, projections and the training split are
computed on request (`compute`, off the page's thread). `payload` packs a time-lapse for the
page's WebGL component; `gif` renders it as an animated GIF.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch

from lifelong import metrics
from lifelong.embedding import codes_of, compact_xy, every_point, fit_over_snapshots
from lifelong.explore.latentmap import locate

KIND = "timelapse"  # the run extra's kind (timelapse-NN.safetensors, NN = last snapshot)
MAX_POINTS = 200_000  # what a stored time-lapse may hold (a foreign run's is checked)


@dataclass
class TimeLapse:
    """One projection of the same images' codes at every snapshot."""

    snapshots: list[int]  # after_task of each frame
    task: torch.Tensor  # [N] long
    index: torch.Tensor  # [N] long: position in the page's data of that task
    label: torch.Tensor  # [N] long
    expert: torch.Tensor  # [S, N] long (-1: not a mixture)
    xy: torch.Tensor  # [S, N, 2] float32
    drift: list  # [S][T] metrics.drift of the codes the projection was fitted to
    space: str = "routed"
    method: str = "PCA"

    def __len__(self) -> int:
        return len(self.task)

    def frame(self, after_task: int) -> int:
        """The frame of snapshot `after_task` (the last one before it if it has none)."""
        earlier = [k for k, a in enumerate(self.snapshots) if a <= after_task]
        return earlier[-1] if earlier else 0


def from_codes(points, codes, experts, snapshots, n_tasks, space, method, seed=0) -> TimeLapse:
    """A time-lapse of codes [S][N, d] of the images `points` (task, index, label) at the
    snapshots `snapshots` (after_task each); `experts` [S][N]."""
    xy = fit_over_snapshots(codes, method, seed)
    return TimeLapse(
        snapshots=[int(a) for a in snapshots],
        task=points["task"].long(),
        index=points["index"].long(),
        label=points["label"].long(),
        expert=torch.as_tensor(np.stack(experts)).long(),
        xy=torch.from_numpy(xy),
        drift=metrics.drift(codes, points["task"].numpy(), list(snapshots), n_tasks),
        space=space,
        method=method,
    )


def compute(
    run_path, tests: list, space: str, method: str, per_task: int | None = None, device="cpu"
):
    """The time-lapse of every image of `tests` (the first `per_task` of each) in `space`,
    projected by `method`: loads each snapshot of the run itself on `device` (the app's
    batch device; it runs in a worker thread, apart from the page's objects). ValueError
    (one line) if a snapshot has no such space or the projection cannot be made."""
    from lifelong.runs import open_run

    torch.set_num_threads(1)
    run = open_run(run_path)
    points = every_point(tests, per_task)
    codes, experts = [], []
    for after in run.snapshots:
        model = run.load_model(after, device=device)
        try:
            c, e = codes_of(model, tests, points, space)
        except (KeyError, IndexError, NotImplementedError) as exc:
            raise ValueError(f"snapshot after task {after} has no {space} codes ({exc})") from None
        codes.append(c)
        experts.append(e)
    seed = run.manifest.get("seed", 0)
    return from_codes(points, codes, experts, run.snapshots, len(tests), space, method, seed)


def to_tensors(tl: TimeLapse, tests: list) -> dict[str, torch.Tensor]:
    """What `eval --write` stores: indexes made positions in each task's full test split
    (a stored evaluation sample's `index`), as the stored latent maps are."""
    index = tl.index.clone()
    for j, data in enumerate(tests):
        full = getattr(data, "index", None)
        rows = tl.task == j
        if full is not None:
            index[rows] = full[tl.index[rows]]
    drift = [[math.nan if v is None else v for v in row] for row in tl.drift]
    return {
        "task": tl.task.int(),
        "index": index.int(),
        "label": tl.label.int(),
        "expert": tl.expert.short(),
        "xy": compact_xy(tl.xy),
        "snapshots": torch.tensor(tl.snapshots, dtype=torch.int32),
        "drift": torch.tensor(drift, dtype=torch.float32).reshape(len(tl.snapshots), -1),
    }


def stored(run, tests: list, space: str, method: str = "PCA") -> TimeLapse | None:
    """The time-lapse `eval --write` stored with the run, if it holds the run's current
    snapshots and is well formed, restricted to the images `tests` hold (a stored sample
    where the dataset is absent); None otherwise (the page then computes one). RunError if
    its file is corrupt."""
    if method != "PCA" or not run.snapshots:
        return None
    t = run.extra(KIND, run.snapshots[-1])
    if t is None or not _well_formed(t, run, len(tests)):
        return None
    keep, index = locate(t["task"].long(), t["index"].long(), tests)
    if not bool(keep.any()):
        return None
    drift = [[None if math.isnan(v) else float(v) for v in row] for row in t["drift"].tolist()]
    return TimeLapse(
        snapshots=[int(a) for a in t["snapshots"]],
        task=t["task"].long()[keep],
        index=index[keep],
        label=t["label"].long()[keep],
        expert=t["expert"].long()[:, keep],
        xy=t["xy"].float()[:, keep],
        drift=drift,
        space=space,
        method="PCA",
    )


def _well_formed(t: dict, run, n_tasks: int) -> bool:
    need = ("task", "index", "label", "expert", "xy", "snapshots", "drift")
    if not all(k in t for k in need):
        return False
    n, s = len(t["task"]), len(run.snapshots)
    if not 0 < n <= MAX_POINTS or t["snapshots"].tolist() != run.snapshots:
        return False
    shapes = {
        "index": (n,),
        "label": (n,),
        "expert": (s, n),
        "xy": (s, n, 2),
        "drift": (s, n_tasks),
    }
    if any(tuple(t[k].shape) != v for k, v in shapes.items()):
        return False
    task = t["task"].long()
    return bool(((task >= 0) & (task < n_tasks)).all()) and bool(torch.isfinite(t["xy"]).all())


def groups(tl: TimeLapse, colour: str, tests: list, task_names: list[str]):
    """(names, group [G, N] int): each point's group when coloured by task, class or expert
    (per frame: G = S, since routing changes between snapshots; else G = 1)."""
    if colour == "expert":
        ids = sorted(set(tl.expert.flatten().tolist()))
        names = ["no expert" if e < 0 else f"expert {e}" for e in ids]
        return names, torch.searchsorted(torch.tensor(ids), tl.expert.contiguous())
    if colour == "class":
        per_point = []
        for t, y in zip(tl.task.tolist(), tl.label.tolist(), strict=True):
            classes = tests[t].classes
            per_point.append(classes[y] if y < len(classes) else str(y))
        names = sorted(set(per_point), key=_natural)
        lookup = {n: i for i, n in enumerate(names)}
        return names, torch.tensor([[lookup[p] for p in per_point]])
    names = [f"{j}: {name}" for j, name in enumerate(task_names)]
    return names, tl.task.view(1, -1).clone()


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def payload(tl: TimeLapse, group: torch.Tensor) -> tuple[bytes, dict]:
    """The time-lapse packed for the page's component: one little-endian buffer and its
    layout {name: [byte offset, count]}: xy float32 [S*N*2], index uint32 [N], group
    uint16 [G*N], task uint16 [N], label uint16 [N]."""
    parts = [
        ("xy", tl.xy.numpy().astype("<f4")),
        ("index", tl.index.numpy().astype("<u4")),
        ("group", group.numpy().astype("<u2")),
        ("task", tl.task.numpy().astype("<u2")),
        ("label", tl.label.numpy().astype("<u2")),
    ]
    layout, chunks, offset = {}, [], 0
    for name, arr in parts:
        raw = arr.tobytes()
        layout[name] = [offset, int(arr.size)]
        chunks.append(raw)
        offset += len(raw)
    return b"".join(chunks), layout


def drift_rows(tl: TimeLapse, task_names: list[str]) -> list[dict]:
    """The drift matrix as table rows (CSV): one per snapshot, a column per task."""
    return [
        {
            "after task": a,
            **{f"{j}: {n}": v for j, (n, v) in enumerate(zip(task_names, row, strict=False))},
        }
        for a, row in zip(tl.snapshots, tl.drift, strict=True)
    ]


def gif(
    tl: TimeLapse,
    group: torch.Tensor,
    colours: list[tuple[int, int, int]],
    titles: list[str],
    size: int = 360,
    steps: int = 8,
    hold_ms: int = 900,
    step_ms: int = 70,
) -> bytes:
    """The time-lapse as an animated GIF (PIL only): each snapshot held `hold_ms`, with
    `steps` eased frames between neighbours; points as 2x2-pixel dots in their group's
    colour (frame-wise when `group` has a row per snapshot), the snapshot's title on top.
    Palette images written directly: no quantisation, a few hundred kB for 10,000 points."""
    from PIL import Image, ImageDraw

    xy = tl.xy.numpy().astype(np.float64)
    top, pad = 18, 6
    lo, hi = xy.reshape(-1, 2).min(0), xy.reshape(-1, 2).max(0)
    scale = (size - 2 * pad - 1) / np.maximum(hi - lo, 1e-9).max()
    order = np.arange(len(tl))[::-1]  # earlier tasks on top, as on the page
    palette = [255, 255, 255, 40, 40, 40]
    for c in colours[:254]:
        palette += list(c)
    palette += [0] * (768 - len(palette))

    def render(pos: np.ndarray, g: np.ndarray, title: str) -> Image.Image:
        canvas = np.zeros((size + top, size), dtype=np.uint8)
        px = np.clip(((pos - lo) * scale).round().astype(int) + pad, 0, size - 2)
        x, y = px[order, 0], size - 1 - px[order, 1] + top - 1
        idx = (g[order] % 254 + 2).astype(np.uint8)
        for dx in (0, 1):
            for dy in (0, 1):
                canvas[np.clip(y + dy, top, size + top - 1), x + dx] = idx
        im = Image.fromarray(canvas, "P")
        im.putpalette(palette)
        ImageDraw.Draw(im).text((pad, 3), title, fill=1)
        return im

    g = group.numpy()
    frames, durations = [], []
    for k in range(len(tl.snapshots)):
        gk = g[min(k, len(g) - 1)]
        frames.append(render(xy[k], gk, titles[k]))
        durations.append(hold_ms)
        if k + 1 < len(tl.snapshots):
            for s in range(1, steps):
                t = s / steps
                t = t * t * (3 - 2 * t)  # smoothstep
                pos = xy[k] + (xy[k + 1] - xy[k]) * t
                frames.append(render(pos, gk, f"{titles[k]} -> {titles[k + 1]}"))
                durations.append(step_ms)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buf.getvalue()


def atlas_pages(tests: list, task: torch.Tensor, index: torch.Tensor, per_page: int = 1024):
    """The points' images as PNG pages of tiles in point order (tile i: page i // per_page,
    row-major in a square grid of cols = sqrt(per_page) tiles): what the page shows when the
    pointer rests on a point, fetched a page at a time. Yields (cols, PNG bytes) per page;
    fast zlib level: pages are made once per data and read on this machine."""
    from PIL import Image

    cols = int(math.isqrt(per_page))
    for start in range(0, len(task), per_page):
        t, idx = task[start : start + per_page], index[start : start + per_page]
        first = tests[int(t[0])].x
        c, h, w = first.shape[1:]
        tiles = torch.zeros(len(t), c, h, w, dtype=torch.uint8)
        for j in t.unique().tolist():
            rows = torch.nonzero(t == j).flatten()
            x = tests[j].x[idx[rows]]
            tiles[rows] = (x * 255).round().clamp(0, 255).to(torch.uint8)
        n_rows = -(-len(t) // cols)
        grid = torch.zeros(n_rows * cols, c, h, w, dtype=torch.uint8)
        grid[: len(t)] = tiles
        grid = (
            grid.view(n_rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(n_rows * h, cols * w, c)
        )
        arr = grid.numpy()
        im = Image.fromarray(arr[..., 0] if c == 1 else arr, "L" if c == 1 else "RGB")
        buf = io.BytesIO()
        im.save(buf, "PNG", compress_level=1)
        yield cols, buf.getvalue()


def table(tl: TimeLapse, tests: list) -> list[dict]:
    """One row per point (the CSV download): task, index, class, and x, y and the expert at
    every snapshot."""
    rows = []
    xy = tl.xy.numpy()
    expert = tl.expert.numpy()
    for i, (t, idx, y) in enumerate(
        zip(tl.task.tolist(), tl.index.tolist(), tl.label.tolist(), strict=False)
    ):
        classes = tests[t].classes
        row = {"task": t, "index": idx, "class": classes[y] if y < len(classes) else str(y)}
        for k, a in enumerate(tl.snapshots):
            row[f"x after {a}"] = float(xy[k, i, 0])
            row[f"y after {a}"] = float(xy[k, i, 1])
            row[f"expert after {a}"] = int(expert[k, i])
        rows.append(row)
    return rows
