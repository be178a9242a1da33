"""Latent map: 2-D projections of latent codes, coloured by task, class or expert; click a point."""

import csv
import io

import plotly.graph_objects as go
import streamlit as st

import ui
from lifelong import runs
from lifelong.explore import images, latentmap

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Latent map")
tests = ui.test_sets(run)
ui.warm_up_umap()  # off the request path: compiles while the user looks at the stored map

c1, c2, c3 = st.columns(3)
space = c1.selectbox(
    "Codes",
    latentmap.spaces(model),
    key="lm_space",
    help="routed: each image through the expert eq. 7 selects",
)
method = c2.selectbox("Projection", latentmap.METHODS, key="lm_method")
colour = c3.selectbox("Colour by", ["task", "class", "expert"], key="lm_colour")

points = None
if space == "routed" and method == "PCA":
    try:
        points = run.extra("map", snap)  # stored when the snapshot was written: no fitting
    except runs.RunError as exc:
        st.warning(f"{exc}; recomputing.")
    if points is not None:  # indexes into the test data this page has (a stored sample?)
        points = latentmap.restrict(points, tests)
if points is None:
    sizes = ",".join(str(len(t)) for t in tests)  # the datasets or the stored samples
    job = ui.background(
        f"{run.path}|{snap}|{space}|{method}|{sizes}",
        latentmap.compute,
        *(run.path, snap, space, method, tests),
    )
    if not job.done():
        ui.wait_for(job, f"{method} of {len(tests)} tasks' codes ({space})")
    try:
        points = job.result()
    except ValueError as exc:
        st.error(str(exc))
        st.stop()

rows = latentmap.table(points, tests)
groups = [
    f"{r['task']}: {run.tasks[r['task']]}"
    if colour == "task"
    else f"expert {r['expert']}"
    if colour == "expert"
    else r["class"]
    for r in rows
]
xy = points["xy"].numpy()
fig = go.Figure()
for name in sorted(set(groups), key=str):
    idx = [i for i, g in enumerate(groups) if g == name]
    fig.add_trace(
        go.Scatter(
            x=xy[idx, 0],
            y=xy[idx, 1],
            mode="markers",
            name=name,
            customdata=idx,
            marker=dict(size=5, opacity=0.7),
            hovertemplate="point %{customdata}<extra>" + name + "</extra>",
        )
    )
fig.update_layout(
    height=560,
    margin=dict(l=10, r=10, t=10, b=10),
    legend_title=colour,
    clickmode="event+select",
    dragmode="pan",
)
left, right = st.columns([3, 1])
with left:
    event = st.plotly_chart(fig, key="lm_chart", on_select="rerun", selection_mode="points")
picked = [p["customdata"] for p in (event.selection.points if event else []) if "customdata" in p]
with right:
    point = st.number_input("Point", 0, len(xy) - 1, picked[0] if picked else 0, key="lm_point")
    if picked:
        point = picked[0]
    r = rows[point]
    st.image(
        images.grid(latentmap.point_images(model, tests, points, point), 2, scale=4),
        output_format="PNG",
        caption=f"point {point}: task {r['task']} image {r['index']} ({r['class']});"
        " input and its decoding",
    )
buf = io.StringIO()
w = csv.DictWriter(buf, fieldnames=list(rows[0]))
w.writeheader()
w.writerows(rows)
d1, d2 = st.columns(2)
d1.download_button(
    "CSV", buf.getvalue(), f"{run.name}-map-{snap}.csv", "text/csv", icon=":material/download:"
)
d2.download_button(
    "HTML",
    lambda: ui.figure_html(fig),
    f"{run.name}-map-{snap}.html",
    "text/html",
    icon=":material/download:",
    on_click="ignore",
)
