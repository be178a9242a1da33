"""Directions to slide (issue 18, part 3) on the pages: the Latent traversal's section (a
slider along the difference of two classes' or tasks' mean codes, the image at its value, the
swept grid and its exports) and the Latent map's colouring by position along that direction.
The maths is lifelong.explore.directions'.

Both pages share one direction (session_state[SHARED]: grouping, from, to, anchor, t and the
traversal's expert), so the map colours by the direction the traversal page slides along;
each page's widgets have their own keys (Streamlit forgets a widget's state on a page that
does not draw it) and start from the shared values. The traversal page carries it in the
address (`?dir=class.3.7.means&dt=0.45`: grouping, the groups' positions in the page's lists,
anchor; t), so a link reopens it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st
import torch

import ui
from lifelong.explore import directions, images, traversal

SHARED = "direction"
ANCHORS = {"means": "the two means", "code": "the panel's code"}
STEPS = [5, 9, 13, 17]  # each puts a column at t = 0 and t = 1
BINS = 24  # the map's colour scale: bins over T_RANGE, the ends open
VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]


def _shared() -> dict:
    spec = st.session_state.get(SHARED)
    if spec is None:
        spec = _from_address()
        st.session_state[SHARED] = spec
    return spec


def _from_address() -> dict:
    """The direction a link names (?dir=BY.I.J.ANCHOR&dt=T); {} if none or malformed."""
    parts = str(st.query_params.get("dir") or "").split(".")
    if len(parts) != 4 or parts[0] not in directions.GROUPINGS or parts[3] not in ANCHORS:
        return {}
    if not (parts[1].isdigit() and parts[2].isdigit()):
        return {}
    spec = {"by": parts[0], "link": (int(parts[1]), int(parts[2])), "anchor": parts[3]}
    try:
        t = float(st.query_params.get("dt") or "nan")
    except ValueError:
        t = float("nan")
    if directions.T_RANGE[0] <= t <= directions.T_RANGE[1]:
        spec["t"] = round(t / 0.05) * 0.05
    return spec


def _pick(widget, label: str, options: list, field: str, key: str, default, **kw):
    """`widget` (st.selectbox, st.radio, ...) drawn from the shared direction's value, which
    then follows the widget."""
    spec = _shared()
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]  # another run's class, say
    if key not in st.session_state:
        value = spec.get(field)
        st.session_state[key] = value if value in options else default
    spec[field] = widget(label, options, key=key, **kw)
    return spec[field]


def _groups(run, tests, prefix: str, columns) -> tuple[str, str, str] | None:
    """(grouping, from, to) from three widgets in `columns`; None (and a line) if the data
    has fewer than two groups."""
    spec = _shared()
    by = _pick(
        columns[0].radio, "Between", list(directions.GROUPINGS), "by", f"{prefix}_by", "class"
    )
    names = directions.group_names(tests, run.tasks, by)
    if len(names) < 2:
        st.caption(f"Directions need two groups; this run's test data has one {by}.")
        return None
    link = spec.pop("link", None)
    if link and max(link) < len(names):
        spec["from"], spec["to"] = names[link[0]], names[link[1]]
        for side in ("from", "to"):
            st.session_state.pop(f"{prefix}_{side}", None)
    frm = _pick(columns[1].selectbox, "From", names, "from", f"{prefix}_from", names[0])
    to = _pick(columns[2].selectbox, "To", names, "to", f"{prefix}_to", names[1])
    return by, frm, to


@st.cache_data(max_entries=64, show_spinner="Encoding the two groups ...")
def _between(path, mtime, snap, expert, by, frm, to, sizes, device, _model, _tests):
    x_from = directions.group_images(_tests, by, frm)
    x_to = directions.group_images(_tests, by, to)
    return directions.between(_model, x_from, x_to, expert)


def direction(run, snap, model, tests, expert, by, frm, to) -> directions.Direction | str:
    """The direction from group `frm` to `to` in `expert`'s space, computed once per run,
    snapshot, expert and groups on the model's (batch) device; else the one line saying why
    there is none (no encoder, no Gaussian variable, an empty group)."""
    sizes = tuple(len(t) for t in tests)
    try:
        return _between(
            str(run.path), ui._mtime(run.path), snap, expert, by, frm, to, sizes,
            str(model.device), model, tests,
        )  # fmt: skip
    except NotImplementedError:
        return f"{run.family} has no encoder: its images have no codes to take means of."
    except ValueError as exc:
        return f"No direction from {frm} to {to}: {exc}."


def _space(d: directions.Direction) -> str:
    blocks = ", ".join(d.blocks)
    return f"expert {d.expert}'s {blocks}" if d.expert is not None else blocks


# -- the traversal page ------------------------------------------------------------------------


def section(run, snap, model, cpu, tests, start: traversal.Start, values: dict) -> None:
    """The traversal page's "Along a direction" section. `model`: the snapshot on the batch
    device (means, grid); `cpu`: on the CPU (the slider's single image); `values`: the
    panel's code (block -> [d]), held on the blocks the direction does not move."""
    st.subheader("Along a direction")
    if not directions.direction_blocks(model, start.expert):
        st.caption(f"{run.family}: this latent space has no Gaussian variables to slide along.")
        return

    @st.fragment
    def body() -> None:
        ui.torch_for_this_thread()
        cols = st.columns([2, 2, 2, 3])
        groups = _groups(run, tests, "tv_dir", cols)
        if groups is None:
            return
        by, frm, to = groups
        anchor = _pick(
            cols[3].radio, "Through", list(ANCHORS), "anchor", "tv_dir_anchor", "means",
            format_func=ANCHORS.get, horizontal=True,
        )  # fmt: skip
        names = directions.group_names(tests, run.tasks, by)
        address = f"{by}.{names.index(frm)}.{names.index(to)}.{anchor}"
        d = direction(run, snap, model, tests, start.expert, by, frm, to)
        if isinstance(d, str):
            st.caption(d)
            return
        _shared()["expert"] = d.expert
        if d.is_zero():
            _set_address(address, None)
            st.info(
                f"{frm} and {to} have the same mean code in {_space(d)}: the direction"
                " between them is zero, there is nothing to slide along."
            )
            return
        st.caption(
            f"t moves {_space(d)} along the difference of the mean codes (posterior means) of "
            f"{frm} ({d.counts[0]} images) and {to} ({d.counts[1]}), |Δ| = {d.norm:.2f}: "
            + (
                "t = 0 is the mean code of the first, t = 1 of the second"
                if anchor == "means"
                else "t = 0 is the panel's code, t = 1 that code moved by the whole difference"
            )
            + "; outside 0..1 the line goes on. Other blocks stay at the panel's values. The "
            "Latent map can colour its points by their t."
        )
        slide(cpu, d, values, anchor, address)
        grid(model, d, values, anchor, f"{run.name}-{snap}-{by}-{frm}-{to}")

    body()


def _set_address(address: str, t: float | None) -> None:
    if st.query_params.get("dir") != address:
        st.query_params["dir"] = address
    text = None if t is None else f"{t:.2f}"
    if text and st.query_params.get("dt") != text:
        st.query_params["dt"] = text


@st.fragment
def slide(cpu, d: directions.Direction, values: dict, anchor: str, address: str) -> None:
    """The t slider and its image, decoded on the CPU (one image: per-op overhead, not
    arithmetic); a fragment, so moving the slider reruns this alone."""
    ui.torch_for_this_thread()
    spec = _shared()
    lo, hi = directions.T_RANGE
    if "tv_dir_t" not in st.session_state:
        st.session_state["tv_dir_t"] = float(spec.get("t", 0.5))
    left, right = st.columns([3, 1])
    t = left.slider(
        "t along the direction", lo, hi, step=0.05, key="tv_dir_t",
        help="0: the first group's mean code (or the panel's code), 1: the second's",
    )  # fmt: skip
    spec["t"] = t
    _set_address(address, t)
    img = directions.decode_along(cpu, d, values, [t], anchor)
    right.image(images.grid(img, 1, pad=0, scale=4), caption=f"t = {t:+.2f}")


def grid(model, d: directions.Direction, values: dict, anchor: str, name: str) -> None:
    """The direction swept in N steps over T_RANGE, decoded in one batch on the batch
    device; PNG, GIF and NPZ (t, codes, images, the two means) downloads."""
    steps = st.select_slider("Steps", STEPS, value=9, key="tv_dir_steps")
    ts = np.linspace(*directions.T_RANGE, steps)
    imgs = directions.decode_along(model, d, values, ts, anchor)
    st.image(
        images.grid(imgs, steps, scale=2),
        caption="along the direction, t = " + " ".join(f"{t:+.2f}" for t in ts),
    )
    codes = directions.codes_along(d, values, ts, anchor)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"direction-{name}")
    d1, d2, d3 = st.columns(3)
    d1.download_button(
        "Direction PNG", directions.grid_png(imgs), f"{name}.png", "image/png", key="tv_dir_png"
    )
    for col, label, ext, mime, make in (
        (d2, "Direction GIF", "gif", "image/gif", lambda: directions.sweep_gif(imgs)),
        (d3, "Direction NPZ", "npz", "application/octet-stream",
         lambda: directions.sweep_npz(d, ts, codes, imgs)),
    ):  # fmt: skip
        col.download_button(
            label, make, f"{name}.{ext}", mime, key=f"tv_dir_{ext}", on_click="ignore"
        )


# -- the latent map ------------------------------------------------------------------------


def scale_colours(n: int) -> list[str]:
    """n colours along viridis (dark: low t, yellow: high t)."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS], float)
    at = np.linspace(0, len(stops) - 1, n)
    rgb = [
        stops[int(a)] + (stops[min(int(a) + 1, len(stops) - 1)] - stops[int(a)]) * (a % 1)
        for a in at
    ]
    return [f"#{int(r + 0.5):02x}{int(g + 0.5):02x}{int(b + 0.5):02x}" for r, g, b in rgb]


@st.cache_data(max_entries=16, show_spinner="Placing every point along the direction ...")
def _positions(path, mtime, snap, points, direction_key, device, _model, _sets, _tl, _d):
    return directions.point_positions(_model, _sets, _tl.task, _tl.index, _d).numpy()


def map_scale(run, snap, model, sets, tl) -> dict | None:
    """For the Latent map's "direction" colouring: the direction's pickers in one row (the
    expert's too for a mixture), then every point's t along it at the sidebar's snapshot
    (encoded on the batch device) as a continuous colour scale: {names, group [1, N],
    colors, title, lo, hi}. None, with a line saying why, if there is no direction."""
    cols = st.columns(4)
    groups = _groups(run, sets, "lm_dir", cols)
    if groups is None:
        return None
    by, frm, to = groups
    expert = None
    if model.experts():
        default = _shared().get("expert")
        default = default if default in model.experts() else model.experts()[0]
        expert = _pick(
            cols[3].selectbox, "In the space of", model.experts(), "expert", "lm_dir_expert",
            default, format_func=lambda e: f"expert {e}",
        )  # fmt: skip
    d = direction(run, snap, model, sets, expert, by, frm, to)
    if isinstance(d, str):
        st.caption(d)
        return None
    if d.is_zero():
        st.info(
            f"{frm} and {to} have the same mean code in {_space(d)}: no direction to colour by."
        )
        return None
    h = hashlib.sha256(tl.task.numpy().tobytes() + tl.index.numpy().tobytes()).hexdigest()
    key = hashlib.sha256(d.start.numpy().tobytes() + d.end.numpy().tobytes()).hexdigest()
    t = _positions(
        str(run.path), ui._mtime(run.path), snap, h, key, str(model.device), model, sets, tl, d
    )
    lo, hi = directions.T_RANGE
    names, group = directions.binned(torch.from_numpy(t), lo, hi, BINS)
    return {
        "names": names,
        "group": group,
        "colors": scale_colours(BINS),
        "title": f"t from {frm} (0) to {to} (1), {_space(d)}, after task {snap}",
        "lo": lo,
        "hi": hi,
    }
