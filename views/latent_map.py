"""Latent map: a time-lapse of every test image's codes over the run's snapshots, in one
projection; the latent drift matrix beside it; hover a point for its image, click to decode."""

import csv
import io

import streamlit as st

import direction_panel
import latentmap_panel as panel
import ui
from lifelong import runs
from lifelong.explore import images, latentmap, timelapse

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Latent map")
tests = ui.test_sets(run)
ui.warm_up_umap()  # off the request path: compiles while the user looks at the stored map

c1, c2, c3, c4 = st.columns(4)
space = c1.selectbox(
    "Codes",
    latentmap.spaces(model),
    key="lm_space",
    help="task expert: each task's images through the expert holding the task (the drift's "
    "space); routed: each image through the expert eq. 7 selects at that snapshot",
)
method = c2.selectbox("Projection", latentmap.METHODS, key="lm_method")
colour = c3.selectbox(
    "Colour by",
    ["task", "class", "expert", "direction"],
    key="lm_colour",
    format_func=lambda c: "direction (from → to)" if c == "direction" else c,
    help="direction: each point's position t along the difference of two classes' or tasks'"
    " mean codes (0: the first's, 1: the second's), as on the Latent traversal page",
)
split = c4.selectbox("Images", panel.SPLITS, key="lm_split", help="every image of each task")
status = st.container()  # notes and what computes: above the map, which stays in place
sets, why = panel.image_sets(run, tests, split)
if why:
    status.caption(f"Test images only: {why}.")
    split = "test"
tl, note = panel.timelapse_for(run, model, sets, space, method, split, snap, status)
if tl is None:
    st.stop()  # computing, and the run stored no map of this snapshot to show meanwhile

scale = direction_panel.map_scale(run, snap, model, sets, tl) if colour == "direction" else None
colour = "task" if colour == "direction" and scale is None else colour
left, right = st.columns([3, 1])
if st.session_state.get("lm_point", 0) >= len(tl):  # another map, with fewer points
    st.session_state["lm_point"] = 0
if st.session_state.get("_lm_snap") != snap:  # the sidebar moved: decode at its snapshot
    st.session_state["_lm_snap"] = snap
    st.session_state.pop("lm_frame", None)
with left:
    panel.show(tl, sets, run, colour, tl.frame(snap), note, scale)
with right:
    point = st.number_input("Point", 0, len(tl) - 1, 0, key="lm_point")
    frame = st.session_state.get("lm_frame", tl.frame(snap))
    frame = frame if 0 <= frame < len(tl.snapshots) else tl.frame(snap)
    after = tl.snapshots[frame]
    chosen = {"task": tl.task, "index": tl.index, "expert": tl.expert[frame]}
    t, idx, y = int(tl.task[point]), int(tl.index[point]), int(tl.label[point])
    cls = sets[t].classes[y] if y < len(sets[t].classes) else y
    try:
        decoder = ui.load_model(run, after)
    except runs.RunError as exc:  # a damaged snapshot: the others still show
        st.error(str(exc))
    else:
        st.image(
            images.grid(latentmap.point_images(decoder, sets, chosen, point), 2, 4),
            output_format="PNG",
            caption=f"point {point}: task {t} image {idx} ({cls});"
            f" input and its decoding after task {after}",
        )
what = {"PCA": "one PCA fitted to the codes of every snapshot stacked"}.get(
    tl.method, f"{tl.method} fitted to the last snapshot's codes, the others placed into it"
)
st.caption(
    f"{len(tl):,} images × {len(tl.snapshots)} snapshots, {tl.space} codes, {what}: a point "
    "moves only where its code moved. Mixtures: each expert has its own coordinates, so a "
    "point of the routed space also jumps when eq. 7 sends its image to another expert."
    + (f" ({note}: the map of this snapshot alone until then.)" if note else "")
)
if tl.drift:
    st.subheader("Latent drift")
    st.markdown(panel.drift_table(tl, run), unsafe_allow_html=True)
    st.caption(
        "How far each task's codes moved since the snapshot after it was learnt: mean distance"
        " over the codes' spread then (0: not at all; 1.4: as far as two random codes of the "
        "task). `python -m lifelong eval RUN --metrics drift --write` stores it (task expert "
        "codes) for the Forgetting and Compare pages."
    )


def points_csv() -> str:
    buf, rows = io.StringIO(), timelapse.table(tl, sets)
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


d1, d2, d3 = st.columns(3)
d1.download_button(
    "CSV",
    points_csv,
    f"{run.name}-map.csv",
    "text/csv",
    icon=":material/download:",
    on_click="ignore",
)
d2.download_button(
    "HTML",
    lambda: panel.html(tl, sets, run, colour, tl.frame(snap), scale=scale),
    f"{run.name}-map.html",
    "text/html",
    icon=":material/download:",
    on_click="ignore",
    help="opens offline: the map's own script, points and images inlined",
)
d3.download_button(
    "GIF",
    lambda: panel.gif(tl, sets, run, colour, scale),
    f"{run.name}-map.gif",
    "image/gif",
    icon=":material/download:",
    on_click="ignore",
)
