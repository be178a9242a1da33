"""Forgetting: a time machine over snapshots, the forgetting matrix, a baseline beside it."""

import streamlit as st

import ui
from lifelong import metrics, runs
from lifelong.explore import forgetting, images, overview, summary

run, snap = st.session_state.get("selection") or ui.sidebar()
ui.model_or_stop(run, snap)
st.title("Forgetting")
st.caption(
    "Step through the snapshots: every task's test images, their reconstructions and samples"
    " for that task, by the model as it was after task k. Unseen tasks show forward transfer."
)

tests = ui.test_sets(run)
c1, c2, c3 = st.columns([3, 3, 1])
k = c1.select_slider(
    "After task",
    options=run.snapshots,
    value=snap,
    key=f"fg_k-{run.name}",
    format_func=lambda t: f"{t}: {run.tasks[t]}",
)
others = forgetting.comparable(run, ui.openable_runs())
base_label = c2.selectbox(
    "Beside it (a run over the same tasks)",
    ["none", *others],
    key="fg_base",
    help="Train a baseline on the same --tasks (e.g. --model vae) to see it here.",
)
n = c3.number_input("Images", 2, 16, 8, key="fg_n")


@st.cache_data(max_entries=32, show_spinner=False)  # ~0.8 MB at 10 tasks, 16 images
def snapshot_rows(key: tuple, after: int, n: int, _model, _tests: list) -> list[dict]:
    """Every task's inputs, reconstructions and samples after task `after`, once per
    snapshot and image count (10 tasks x 10 experts: 0.2-0.3 s a render otherwise)."""
    return forgetting.snapshot_rows(_model, _tests, after, n)


def show(col, the_run, after: int | None, side: str) -> None:
    with col:
        st.markdown(f"**{the_run.name}** · {the_run.family}")
        if after is None:
            st.info("No snapshot of this run at or before that task.")
            return
        try:
            model = ui.load_model(the_run, after)
        except runs.RunError as exc:
            st.error(str(exc))
            return
        key = summary.weights_key(the_run, after, tests)
        for row in snapshot_rows(key, after, int(n), model, tests):
            seen = "" if row["seen"] else " · not seen yet"
            ui.picture(
                forgetting.row_grid(row),
                f"{the_run.name}-after{after}-task{row['task']}",
                f"{side}-{row['task']}",
                f"task {row['task']} `{row['name']}`: inputs / reconstructions / samples{seen}",
            )
        for task, imgs in forgetting.replayed(model).items():
            st.image(images.grid(imgs, len(imgs), scale=2), caption=f"replayed during task {task}")


if base_label == "none":
    show(st.container(), run, k, "run")
else:
    base = others[base_label]
    earlier = [s for s in base.snapshots if s <= k]
    left, right = st.columns(2)
    show(left, run, k, "run")
    show(right, base, earlier[-1] if earlier else None, "base")

st.subheader("Forgetting matrix")
names = forgetting.stored_metrics(run)
metric = st.radio("Metric", names, horizontal=True, key="fg_metric", format_func=metrics.label)
if metric:
    z, xs, ys = overview.matrix_labels(run, metric)
    lower = not metrics.definition(metric).higher_is_better  # Fréchet, transfer: as MSE
    ui.figure(ui.heatmap(z, xs, ys, lower), f"{run.name}-{metric}", "fg-matrix")
    st.download_button("CSV", forgetting.matrix_csv(run, metric), f"{run.name}-{metric}.csv")
