"""Expert timeline: mixing weights, frozen and added experts, routing, per-epoch figures."""

import plotly.graph_objects as go
import streamlit as st

import ui
from lifelong.explore import timeline

run, snap = st.session_state.get("selection") or ui.sidebar()
ui.model_or_stop(run, snap)
st.title("Expert timeline")
st.caption("Read from the run's events and log: nothing is recomputed.")

tl = timeline.expert_states(run)
tasks = [f"{t}: {name}" for t, name in enumerate(run.tasks)]
if tl["experts"]:
    st.subheader("Dirichlet parameters and expert states per task")
    st.caption(
        "Cell: the Dirichlet parameter a_k while task t trains (paper 000 eq. 6) and the"
        " expert's state; frozen experts hold a finished task, added/reused come from eq. 24."
    )
    # rows of the stored tables are tasks; the figure wants experts as rows
    z = [list(col) for col in zip(*tl["alpha"], strict=True)]
    states = [list(col) for col in zip(*tl["state"], strict=True)]
    text = [
        [("" if a is None else f"{a:.2f}") + f"<br>{s}" for a, s in zip(za, zs, strict=True)]
        for za, zs in zip(z, states, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=tasks,
            y=[f"expert {k}" for k in tl["experts"]],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate="%{y}, during %{x}: a=%{z}<extra></extra>",
        )
    )
    fig.update_layout(
        height=80 + 70 * len(tl["experts"]),
        margin=dict(l=10, r=10, t=10, b=10),
        yaxis_autorange="reversed",  # expert 0 on top, as in the routing table below
    )
    ui.figure(fig, f"{run.name}-experts", "tl-experts")

    routed = timeline.routing(run, snap)
    if routed:
        st.subheader(f"Where each task's test data goes after task {snap}")
        experts = [f"expert {k}" for k in range(len(routed[0]))]
        ui.figure(ui.heatmap(routed, experts, tasks), f"{run.name}-routing-{snap}", "tl-routing")
else:
    st.info(f"{run.family} is not a mixture: there are no experts to follow. Its losses are below.")

st.subheader("Per-epoch figures")
series = timeline.epoch_series(run)
if series["series"]:
    names = list(series["series"])
    default = [n for n in ("total", "active_components", "dropout_rate") if n in names][:2]
    chosen = st.multiselect("Series", names, default=default or names[:1], key="tl_series")
    fig = go.Figure()
    for name in chosen:
        fig.add_trace(go.Scatter(x=series["x"], y=series["series"][name], name=name))
    for b in series["boundaries"]:
        fig.add_vline(x=b - 0.5, line_dash="dot", line_color="grey")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="epoch")
    ui.figure(fig, f"{run.name}-epochs", "tl-epochs")
    st.caption("Dotted lines: task boundaries.")
else:
    st.info("This run's log has no per-epoch records.")
