"""The Latent map's time-lapse on the page (issue 18): where a time-lapse comes from, and the
WebGL component that plays it (components/latentmap/: plain HTML, CSS and an ES module, no
build step, no plotting library to load).

A time-lapse is the one `eval --metrics drift --write` stored with the run (first paint: read,
nothing fitted), or one computed off the page's thread (ui.background) for another space,
projection or image set; meanwhile the snapshot's own stored map is shown as one frame. The
points travel to the page as one packed binary file and the images as PNG pages of tiles,
both written once per content hash under components/latentmap/.cache/ (ignored by git) and
fetched by the page from there, so they never ride along with a rerun; the image pages are
written by a thread after the first paint, which waits for none of them.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components
import torch

import ui
from lifelong import data as ldata
from lifelong import runs
from lifelong.explore import latentmap, timelapse

COMPONENT = Path(__file__).resolve().parent / "components" / "latentmap"
CACHE = COMPONENT / ".cache"
KEEP_FILES = 512  # files kept in CACHE (the oldest are removed beyond this)
KEY = "lm_map"
SPLITS = ["test", "test + train"]
PALETTE = [  # Tableau 10, then evenly spread hues
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
]  # fmt: skip


def colours(n: int) -> list[str]:
    out = PALETTE[:n]
    for i in range(len(out), n):
        r, g, b = colorsys.hls_to_rgb((i * 0.618034) % 1, 0.45, 0.65)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def _component():
    # Registered on every run (a no-op after the first): AppTest starts a fresh runtime per test.
    return components.declare_component("timelapse_map", path=str(COMPONENT))


def _write(name: str, blob: bytes) -> str:
    """`blob` as CACHE/name (written once, atomically); its URL relative to index.html."""
    path = CACHE / name
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        old = sorted(CACHE.glob("*.*"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-KEEP_FILES]:
            stale.unlink(missing_ok=True)
    return f"{CACHE.name}/{name}"


@st.cache_resource
def _atlas_writer() -> tuple[ThreadPoolExecutor, dict]:
    return ThreadPoolExecutor(1, thread_name_prefix="latentmap-atlas"), {}


def _atlas(tl: timelapse.TimeLapse, sets: list) -> dict:
    """The hover images' pages: URLs now, files written by a thread (the page retries a page
    that is not there yet)."""
    h = hashlib.sha256(tl.task.numpy().tobytes() + tl.index.numpy().tobytes())
    for data in sets:
        step = max(1, len(data) // 64)
        h.update(data.x[::step].numpy().tobytes())
    fp = h.hexdigest()[:24]
    per_page = 1024
    n_pages = -(-len(tl) // per_page)
    urls = [f"{CACHE.name}/atlas-{fp}-{p}.png" for p in range(n_pages)]
    pool, started = _atlas_writer()
    if fp not in started and not (CACHE / f"atlas-{fp}-{n_pages - 1}.png").is_file():

        def write():
            for p, (_, png) in enumerate(timelapse.atlas_pages(sets, tl.task, tl.index, per_page)):
                _write(f"atlas-{fp}-{p}.png", png)

        started[fp] = pool.submit(write)
    c, hh, ww = sets[int(tl.task[0])].x.shape[1:]
    return {"urls": urls, "tile": [int(hh), int(ww)], "cols": 32, "per_page": per_page}


def _groups(tl, sets, run, colour: str, scale: dict | None):
    """(names, group [G, N], palette): by task, class or expert, or `scale`'s bins (a
    continuous colour scale: direction_panel.map_scale)."""
    if scale is not None:
        return scale["names"], scale["group"], scale["colors"]
    names, group = timelapse.groups(tl, colour, sets, run.tasks)
    return names, group, colours(len(names))


def render_args(
    tl, sets, run, colour: str, frame: int, selected: int, inline=False, scale=None
) -> dict:
    """What the component (or the HTML export, `inline`) receives. `scale`: a continuous
    colouring ({names, group, colors, title, lo, hi}) instead of `colour`'s groups; the
    legend then draws it as a colour bar."""
    names, group, palette = _groups(tl, sets, run, colour, scale)
    blob, layout = timelapse.payload(tl, group)
    args = {
        "state": _state(tl, run),
        "layout": layout,
        "n": len(tl),
        "s": len(tl.snapshots),
        "g": int(group.shape[0]),
        "frames": [f"after task {a}: {run.tasks[a]}" for a in tl.snapshots],
        "frame": frame,
        "groups": [{"name": n, "color": c} for n, c in zip(names, palette, strict=True)],
        "tasks": list(run.tasks),
        "classes": [list(d.classes) for d in sets],
        "selected": selected,
        "height": 520,
    }
    if scale is not None:
        args["scale"] = {k: scale[k] for k in ("title", "lo", "hi")}
    if inline:
        args["dataBase64"] = base64.b64encode(blob).decode()
    else:
        args["data"] = _write(f"points-{hashlib.sha256(blob).hexdigest()[:32]}.bin", blob)
        args["atlas"] = _atlas(tl, sets)
    return args


def show(tl, sets, run, colour: str, frame: int, note: str = "", scale=None) -> None:
    """Draw the map. A point the user clicked on this map (the component's value: {state,
    point, frame}) becomes the page's point (session_state lm_point) and the frame it is
    decoded at (lm_frame) before the map is drawn, so the map marks it at once."""
    state = _state(tl, run)
    sent = st.session_state.get(KEY)
    if (
        isinstance(sent, dict)
        and sent.get("state") == state
        and sent != st.session_state.get("_lm_sent")
        and isinstance(sent.get("point"), int)
        and 0 <= sent["point"] < len(tl)
    ):
        st.session_state["_lm_sent"] = sent
        st.session_state["lm_point"] = sent["point"]
        st.session_state["lm_frame"] = min(max(0, int(sent.get("frame", 0))), len(tl.snapshots) - 1)
    selected = int(st.session_state.get("lm_point", 0))
    try:
        args = render_args(tl, sets, run, colour, frame, selected, scale=scale)
    except OSError as exc:  # the component's folder is not writable, the disk is full
        st.error(f"The map's files could not be written ({exc.strerror or exc}).")
        return
    _component()(**args, note=note, key=KEY, default=None)


def _state(tl, run) -> str:
    """Names the map a click belongs to (a click on another map is not this map's point)."""
    return f"{run.path}|{tl.space}|{tl.method}|{len(tl)}|{tl.snapshots}"


def html(tl, sets, run, colour: str, frame: int, max_images: int = 20_000, scale=None) -> str:
    """The map as one HTML file that opens offline: this component's own script and style
    inlined, the points and (up to `max_images`) the images as data: URLs; no library,
    nothing fetched."""
    args = render_args(tl, sets, run, colour, frame, -1, inline=True, scale=scale)
    if len(tl) <= max_images:
        pages = timelapse.atlas_pages(sets, tl.task, tl.index, 1024)
        urls = [f"data:image/png;base64,{base64.b64encode(png).decode()}" for _, png in pages]
        c, hh, ww = sets[int(tl.task[0])].x.shape[1:]
        args["atlas"] = {"urls": urls, "tile": [int(hh), int(ww)], "cols": 32, "per_page": 1024}
    else:
        args["atlas"] = None
        args["note"] = f"{len(tl):,} points: images left out of this file (over {max_images:,})"
    page = (COMPONENT / "index.html").read_text()
    body = page[page.index("<body>") + 6 : page.index("</body>")]
    script = (COMPONENT / "map.js").read_text().replace("</script", "<\\/script")
    data = json.dumps(args).replace("</", "<\\/")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{run.name}: latent'
        f" map</title><style>{(COMPONENT / 'map.css').read_text()}</style></head><body>{body}"
        f"<script>window.LATENT_MAP = {data};</script>"
        f'<script type="module">{script}</script></body></html>'
    )


def drift_table(tl, run) -> str:
    """The drift matrix as a small HTML table, cells shaded by value (darker: moved more).
    Plain HTML rather than a chart: it is drawn with the map's first paint at no cost."""
    top = max([v for row in tl.drift for v in row if v is not None] + [1.5])
    head = "".join(f"<th>{j}: {name}</th>" for j, name in enumerate(run.tasks))
    rows = []
    for a, row in zip(tl.snapshots, tl.drift, strict=True):
        cells = []
        for v in row:
            if v is None:
                cells.append("<td></td>")
                continue
            t = min(1.0, v / top)
            r, g, b = (round(lo + (hi - lo) * t) for lo, hi in ((247, 8), (251, 48), (255, 107)))
            ink = "#fff" if t > 0.5 else "#31333f"
            style = f"background:rgb({r},{g},{b});color:{ink}"
            cells.append(f'<td style="{style}">{v:.3g}</td>')
        rows.append(f"<tr><th>after task {a}</th>{''.join(cells)}</tr>")
    return (
        '<table class="lm-drift" style="text-align:center;font-variant-numeric:tabular-nums">'
        f"<tr><th></th>{head}</tr>{''.join(rows)}</table>"
    )


def gif(tl, sets, run, colour: str, scale=None) -> bytes:
    """The time-lapse as an animated GIF, in the page's colours."""
    _, group, palette = _groups(tl, sets, run, colour, scale)
    rgb = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in palette]
    titles = [f"after task {a}: {run.tasks[a]}" for a in tl.snapshots]
    return timelapse.gif(tl, group, rgb, titles)


@st.cache_resource(show_spinner="Reading the training images ...", max_entries=2)
def _with_train(specs: tuple[str, ...], seed: int, sizes: tuple[int, ...]) -> list:
    out = []
    for spec in specs:
        test = ui.test_data(spec, seed)
        train = ldata.load_task(spec, "train", seed)
        out.append(
            ldata.TaskData(
                spec, torch.cat([test.x, train.x]), torch.cat([test.y, train.y]), test.classes
            )
        )
    return out


def image_sets(run, tests: list, split: str) -> tuple[list, str | None]:
    """The images the map shows: the test data, or per task its test then training images
    (index >= the test size: a training image). (tests, why not) where the training images
    cannot be read for this run (stored samples, a foreign run, a dataset elsewhere)."""
    if split == "test":
        return tests, None
    allow = ui.data_allowed(run)
    if any(getattr(t, "index", None) is not None for t in tests) or not all(
        allow(s) for s in run.tasks
    ):
        return tests, "the training images of this run's datasets are not read on this server"
    try:
        sizes = tuple(len(t) for t in tests)
        return _with_train(tuple(run.tasks), run.manifest.get("seed", 0), sizes), None
    except ldata.DataError as exc:
        return tests, f"the training images could not be read ({exc})"


def timelapse_for(run, model, sets, space: str, method: str, split: str, snap: int, status):
    """(time-lapse, note): the stored one for the default space and PCA on the test images,
    else one computed in the background; while it computes, the snapshot's own stored map
    as one frame (None if it has none) and a line saying so in `status` (a container placed
    above the map, always there, so the map's frame is not rebuilt when the line goes),
    polled until it is done."""
    default = space == timelapse_space(model) and split == "test"
    if default:
        try:
            tl = timelapse.stored(run, sets, space, method)
        except runs.RunError as exc:
            status.warning(f"{exc}; recomputing.")
            tl = None
        if tl is not None:
            return tl, ""
    sizes = ",".join(str(len(t)) for t in sets)
    key = f"timelapse|{run.path}|{run.snapshots}|{space}|{method}|{split}|{sizes}"
    job = ui.background(key, _compute, run.path, sets, space, method, None, ui.batch_device())
    if job.done():
        result = job.result()
        if isinstance(result, Exception):  # no such codes; a damaged snapshot
            status.error(str(result))
            st.stop()
        return result, ""
    with status:
        _poll(job, f"{method} time-lapse of {sum(len(t) for t in sets):,} images ({space})")
    return _one_frame(run, sets, snap, space, method), "computing the time-lapse"


def _compute(*args):
    """timelapse.compute, its expected failures returned rather than raised: ui.background
    runs a failed job again on the next rerun, which would poll forever instead of saying
    what is wrong."""
    try:
        return timelapse.compute(*args)
    except (ValueError, runs.RunError) as exc:
        return exc


def timelapse_space(model) -> str:
    return latentmap.spaces(model)[0]


def _one_frame(run, sets, snap, space, method):
    """The snapshot's stored map (routed codes, PCA) as a one-frame time-lapse, shown while
    the time-lapse computes; None if the run stored none or it does not fit the data."""
    try:
        points = run.extra("map", snap)
    except runs.RunError:
        return None
    points = latentmap.restrict(points, sets) if points is not None else None
    if points is None:
        return None
    return timelapse.TimeLapse(
        [snap],
        points["task"].long(),
        points["index"].long(),
        points["label"].long(),
        points["expert"].long()[None],
        points["xy"].float()[None],
        [],
        "routed",
        "PCA",
    )


def _poll(job, what: str) -> None:
    """A line saying what computes; reruns the page when it is done (no st.stop: the
    snapshot's own map stays usable meanwhile)."""

    @st.fragment(run_every=1.0)
    def poll():
        if job.done():
            st.rerun(scope="app")
        st.caption(f":material/progress_activity: {what} · {time.time() - job.started:.0f} s")

    poll()
