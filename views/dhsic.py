"""dHSIC heatmap: dependence between the experts' latent spaces; click a cell for its codes."""

import plotly.graph_objects as go
import streamlit as st

import ui
from lifelong import runs
from lifelong.explore import dependence

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("dHSIC heatmap")
if not model.experts():
    st.info(f"{run.name} is a {run.family} model with one latent space: no experts to compare.")
    st.stop()
HEURISTICS = {
    "dhsic": "dHSIC package: sqrt(median squared distance / 2)",
    "distance": "median distance (√2 wider)",
}
tests = ui.test_sets(run)
heuristic = st.radio(
    "Bandwidth heuristic",
    list(HEURISTICS),
    format_func=HEURISTICS.get,
    horizontal=True,
    key="dh_heuristic",
    help="'distance' is the kernel width MVAE's regulariser is trained with by default"
    " (MVAEConfig.hsic_bandwidth)",
)
st.caption(
    "Pairwise HSIC between the experts' codes of the same images (paper 002 eq. 14, Fig. 12)"
    " and their joint dHSIC (eq. 15); Gaussian kernels, bandwidth per expert from the median"
    + (
        " heuristic of the R dHSIC package (Pfister et al.): σ = sqrt(median |z_a − z_b|² / 2),"
        " so the joint dHSIC matches `dHSIC::dhsic` on the same codes."
        if heuristic == "dhsic"
        else " distance σ = median |z_a − z_b|, √2 wider than the R dHSIC package's heuristic."
    )
)
c1, c2, c3, c4 = st.columns([2, 1, 2, 1])
task = c1.selectbox(
    "Images",
    [None, *range(len(run.tasks))],
    key="dh_task",
    format_func=lambda t: "every task" if t is None else f"task {t}: {run.tasks[t]}",
)
n = c2.number_input("Samples", 64, 1024, 512, 64, key="dh_n")
scale = c3.select_slider("Bandwidth × median", [0.25, 0.5, 1.0, 2.0, 4.0], 1.0, key="dh_scale")
normalise = c4.toggle(
    "Normalised", True, key="dh_norm", help="HSIC(i,j) / sqrt(HSIC(i,i) HSIC(j,j))"
)
others = {k: r for k, r in ui.openable_runs().items() if r.path != run.path and r.snapshots}
other = st.selectbox(
    "Beside it",
    ["none", *others],
    key="dh_other",
    help="e.g. MVAE with beta=0 next to beta=10 (paper 002 Fig. 12)",
)


def show(col, the_run, the_model, key):
    with col:
        if not the_model.experts():
            st.info(f"{the_run.name} has no experts.")
            return None
        x = dependence.images(
            ui.test_sets(the_run, note=the_run is not run), task if the_run is run else None, int(n)
        )
        h = dependence.heatmap(the_model, x.to(the_model.device), scale, normalise, heuristic)
        labels = [f"expert {k}" for k in h["experts"]]
        fig = ui.heatmap(h["matrix"], labels, labels)
        # plotly heatmaps emit no selection in Streamlit: invisible markers on the cells do
        cells = [(i, j) for i in range(len(labels)) for j in range(len(labels))]
        fig.add_trace(
            go.Scatter(
                x=[labels[j] for _, j in cells],
                y=[labels[i] for i, _ in cells],
                customdata=cells,
                mode="markers",
                marker=dict(size=30, opacity=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
        st.markdown(
            f"**{the_run.name}** · joint dHSIC {h['joint']:.3g} · mean pairwise "
            f"{h['mean_pairwise']:.3g}"
        )
        event = st.plotly_chart(
            fig, key=f"dh_chart_{key}", on_select="rerun", selection_mode="points"
        )
        picked = [
            p["customdata"] for p in (event.selection.points if event else []) if "customdata" in p
        ]
        return h, picked


if other == "none":
    result = show(st.container(), run, model, "a")
else:
    left, right = st.columns(2)
    result = show(left, run, model, "a")
    try:
        second = ui.load_model(others[other], others[other].snapshots[-1])
        show(right, others[other], second, "b")
    except runs.RunError as exc:
        right.error(str(exc))
if result:
    h, picked = result
    i, j = picked[0] if picked else (0, min(1, len(h["experts"]) - 1))
    xi, xj = dependence.first_component(h["codes"][i]), dependence.first_component(h["codes"][j])
    fig = go.Figure(go.Scatter(x=xi, y=xj, mode="markers", marker=dict(size=4, opacity=0.6)))
    fig.update_layout(
        height=360,
        margin=dict(l=10, r=10, t=30, b=10),
        title=f"expert {h['experts'][i]} vs expert {h['experts'][j]}: first principal axis of each",
        xaxis_title=f"expert {h['experts'][i]}",
        yaxis_title=f"expert {h['experts'][j]}",
    )
    ui.figure(fig, f"{run.name}-hsic-pair-{i}-{j}", "dh-pair")
    st.caption(
        f"HSIC {h['matrix'][i][j]:.3g}; bandwidths ({h['heuristic']} heuristic"
        + (f" × {scale}" if scale != 1.0 else "")
        + ") "
        + ", ".join(f"{b:.3g}" for b in h["bandwidths"])
    )
