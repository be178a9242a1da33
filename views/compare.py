"""Compare runs: several runs over the same tasks, ranked, their curves, the same inputs."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from lifelong import metrics, runs
from lifelong.explore import compare, images

run, snap = st.session_state.get("selection") or ui.sidebar()
st.title("Compare runs")
candidates = {k: r for k, r in ui.openable_runs().items() if r.snapshots}
groups = compare.groups(candidates)
if not groups:
    st.info("No run with a finished snapshot yet.")
    st.stop()
mine = tuple(run.tasks) if run is not None else None
default = (
    groups.get(mine) if mine in groups and len(groups[mine]) > 1 else next(iter(groups.values()))
)
picked = st.multiselect("Runs", list(candidates), default=default, key="cmp_runs")
chosen = {k: candidates[k] for k in picked}
if len(chosen) < 2:
    st.info("Pick two or more runs (runs over the same task sequence are offered together).")
    st.stop()
if len({tuple(r.tasks) for r in chosen.values()}) > 1:
    st.warning(
        "These runs were trained on different task sequences: task j is not the same data in"
        " every row, so their figures are not comparable column by column."
    )

st.subheader("Leaderboard")
shown = st.multiselect(
    "Metrics",
    list(compare.BOARD_METRICS),
    ["mse", "frechet"],
    key="cmp_metrics",
    format_func=metrics.label,
)
rows = compare.leaderboard(chosen)
cols = ["run", "family", "settings"]
cols += [c for m in shown for c in rows[0] if c.startswith(f"{m} ")] if rows else []
cols += ["parameters", "size MB", "train s", "device"]
table = pd.DataFrame(rows, columns=cols)
for c in cols[3:-1]:  # numbers (None -> NaN, shown as –)
    table[c] = pd.to_numeric(table[c])
marks = compare.best(rows)


def bold(column):  # the best value of each metric column (see the definitions below)
    win = marks.get(column.name)
    return [
        "font-weight: bold; background-color: #e6f4ea" if r == win else "" for r in table["run"]
    ]


st.dataframe(
    table.style.apply(bold).format(precision=4, na_rep="–"), hide_index=True, key="cmp_board"
)
st.caption(
    "ACC: the mean over tasks after the last task (Fréchet: samples against every seen task)."
    " Forgetting: how much worse each earlier task is after the last task than right after it"
    " was learnt, averaged. BWT / FWT: backward and forward transfer (Lopez-Paz & Ranzato"
    " 2017, as Avalanche and Mammoth compute them). None: undefined for that run (a run"
    " trained on every task at once has no sequence; FWT needs `eval --metrics forward`). Signs"
    " are set so that positive BWT / FWT and low forgetting are good for every metric (MSE and"
    " Fréchet: lower is better). Fitting Capacity (Lesort et al. 2019): a classifier trained"
    " on the model's samples of each seen task (label = task), tested on the real test"
    " images; a model that cannot generate a chosen task (one prior) scores chance, 1 / seen"
    " tasks. Best in each column in bold; click a header to sort."
)
c1, c2 = st.columns(2)
c1.download_button("CSV", table.to_csv(index=False), "leaderboard.csv", "text/csv", key="cmp_csv")
c2.download_button(
    "LaTeX", compare.latex(rows, cols), "leaderboard.tex", "text/plain", key="cmp_tex"
)

st.subheader("Curves")
c1, c2 = st.columns(2)
metric = c1.selectbox(
    "Metric",
    ["mse", "elbo", "psnr", "frechet", "fitting", "iwelbo"],
    key="cmp_curve",
    format_func=metrics.label,
)
tasks = next(iter(chosen.values())).tasks
which = c2.selectbox(
    "Value",
    ["mean over seen tasks", *[f"task {j}: {t}" for j, t in enumerate(tasks)]],
    key="cmp_which",
)
task = None if which.startswith("mean") else int(which.split(":")[0].split()[1])
lines = compare.curves(chosen, metric, task)
if lines:
    fig = go.Figure(
        [
            go.Scatter(x=[k for k, _ in p], y=[v for _, v in p], name=lb, mode="lines+markers")
            for lb, p in lines.items()
        ]
    )
    fig.update_layout(
        height=360,
        xaxis_title="after task k",
        xaxis_dtick=1,
        yaxis_title=metrics.label(metric),
        margin=dict(l=10, r=10, t=10, b=10),
    )
    ui.figure(fig, f"compare-{metric}", "cmp-curves")
    st.download_button(
        "PNG",
        compare.curves_png(lines, which, metrics.label(metric)),
        f"compare-{metric}.png",
        "image/png",
        key="cmp_png",
    )
else:
    st.info(f"None of these runs stores {metrics.label(metric)}.")

st.subheader("Side by side")
c1, c2, c3 = st.columns(3)
k = c1.select_slider("After task", list(range(len(tasks))), len(tasks) - 1, key="cmp_snap")
j = c2.selectbox(
    "Inputs from task",
    list(range(len(tasks))),
    key="cmp_task",
    format_func=lambda i: f"{i}: {tasks[i]}",
)
n = int(c3.number_input("Images", 4, 16, 8, key="cmp_n"))
x = ui.test_sets(next(iter(chosen.values())))[j].x[:n]
loaded = {}
for label, r in chosen.items():
    earlier = [s for s in r.snapshots if s <= k]
    try:
        loaded[label] = ui.load_model(r, earlier[-1]) if earlier else None
    except runs.RunError as exc:
        st.warning(str(exc))
st.image(images.png_bytes(images.grid(x, n, scale=2)), caption="inputs")
with torch.no_grad():
    out = compare.side_by_side({lb: m for lb, m in loaded.items() if m is not None}, x, n)
cells = st.columns(2)
for i, (label, r) in enumerate(out.items()):
    pic = images.grid(torch.cat([r["recon"], r["samples"]]), n, scale=2)
    with cells[i % 2]:
        caption = f"{label}: reconstructions / samples (seed 0)"
        ui.picture(pic, f"{label}-after{k}", f"cmp-{label}", caption)
for label in (lb for lb, m in loaded.items() if m is None):
    st.caption(f"{label}: no snapshot at or before task {k}.")
