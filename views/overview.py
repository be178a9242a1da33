"""Overview: the run card, the forgetting matrix and every task's reconstructions."""

import streamlit as st

import ui
from lifelong import metrics
from lifelong.explore import overview, summary


@st.cache_data(max_entries=16, show_spinner=False)  # ~0.5 MB at 10 tasks
def reconstructions(key: tuple, _model, _tests: list) -> list[dict]:
    """Every task's routed reconstructions, once per snapshot (10 tasks x 10 experts: 0.16 s
    a render otherwise)."""
    return overview.task_reconstructions(_model, _tests)


run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title(f"{run.name}")

card = summary.run_card(run)
cols = st.columns(5)
cols[0].metric("Family", card["family"])
cols[1].metric("Tasks", len(card["tasks"]))
cols[2].metric("Experts", card["experts"] if card["experts"] is not None else "—")
cols[3].metric("Latent dim", card["latent_dim"])
cols[4].metric("Snapshots", f"{card['snapshots']} · {card['size_mb']} MB")
st.caption(" → ".join(f"**{j}** `{t}`" for j, t in enumerate(run.tasks)))
if st.toggle("Export this run", key="ov_export"):
    st.download_button("Run folder (.zip)", ui.run_zip(run), f"{run.name}.zip", "application/zip")

metric = st.radio(
    "Forgetting matrix",
    summary.matrix_names(run) or ["mse"],
    horizontal=True,
    format_func=metrics.label,
    key="ov_metric",
)
z, xs, ys = overview.matrix_labels(run, metric)
if z:
    lower = not metrics.definition(metric).higher_is_better
    ui.figure(ui.heatmap(z, xs, ys, lower), f"{run.name}-{metric}", "ov-matrix")
    st.caption(
        "Row k: the model after task k; column j: evaluated on task j's test set "
        "(unseen tasks included, for forward transfer)."
    )
else:
    st.info(f"This run has no {metric} values.")

scalars = summary.eval_scalars(run)
if scalars:
    with st.expander("Evaluation stored by `python -m lifelong eval --write`"):
        st.dataframe(scalars, hide_index=True, width="stretch")

with st.expander("Task-boundary events (assignment, freezing, Dirichlet parameters, routing)"):
    st.dataframe(summary.event_rows(run, snap), hide_index=True, width="stretch")

st.subheader(f"Reconstructions after task {snap}")
tests = ui.test_sets(run)
rows = reconstructions(summary.weights_key(run, snap, tests), model, tests)
for r in rows:
    st.image(overview.pair_grid(r["x"], r["recon"]), caption=None)
    where = ""
    if r["experts"] is not None:
        routed = ", ".join(str(e) for e in r["experts"])
        where = f" · routed to experts [{routed}] · task held by expert {r['holder']}"
    st.caption(f"task {r['task']} `{r['name']}`: originals above, reconstructions below{where}")
