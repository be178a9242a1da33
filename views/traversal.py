"""Latent traversal: one slider per latent variable decoding live in the page, the -3..3 grid,
a slider along the direction between two classes' or tasks' mean codes (direction_panel)."""

import numpy as np
import streamlit as st

import direction_panel
import traversal_panel
import ui
from lifelong.explore import images, traversal

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Latent traversal")
st.caption(
    "Slide one latent variable at a time and watch which factor it controls (paper 000, Figs. 7-8)."
)

tests = ui.test_sets(run)
experts = model.experts()
expert_opts = (["routed"] if experts else []) + experts
traversal_panel.restore_selection([len(t) for t in tests], expert_opts or ["—"])  # ?tv=
c1, c2, c3 = st.columns([2, 1, 2])
source = c1.selectbox("Input", ["test image", "prior sample"], key="tv_source")
task = c1.selectbox(
    "Task", range(len(run.tasks)), key="tv_task", format_func=lambda j: f"{j}: {run.tasks[j]}"
)
index = c2.number_input("Image / seed", 0, len(tests[task]) - 1, key="tv_index")
choice = c3.selectbox(
    "Expert",
    expert_opts or ["—"],
    key="tv_expert",
    format_func=lambda e: "routed (eq. 7)" if e == "routed" else f"expert {e}",
)
expert = None if choice in ("routed", "—") else int(choice)

if source == "test image":
    x = tests[task].x[index : index + 1]
    start = traversal.start_from_image(model, x.to(model.device), expert)
else:
    if expert is None and experts:
        expert = model.task_experts()[task]
        expert = expert if expert >= 0 else experts[0]
    start = traversal.start_from_prior(model, expert, seed=int(index))
    x = None
if start.expert is not None:
    how = "selected by eq. 7" if start.routed else "chosen by hand"
    st.caption(f"Decoding through expert {start.expert} ({how}).")
state_key = f"{run.name}-{snap}-{source}-{task}-{index}-{start.expert}"

data = tests[task].x[:512].to(model.device)
kl = traversal_panel.per_variable("kl", run, snap, task, start.expert, model, data)
by_index = [(n, i) for n, v in kl.items() for i in range(len(v))]
by_kl = sorted(by_index, key=lambda r: -kl[r[0]][r[1]])
# the panel (traversal_panel.py) decodes in the page while a slider moves; the grid and the
# exports below follow the values it holds when the drag ends
address = traversal_panel.selection_text(source, task, index, choice)
cpu = ui.cpu_model(run, snap)  # one image per step: the CPU (lifelong.explore.device)
values = traversal_panel.panel(cpu, start, state_key, pad=by_kl[:2], address=address)
here = traversal.Start(start.expert, values, start.routed)

st.subheader("Every variable swept")
s1, s2, s3 = st.columns([2, 2, 3])
n_values = s1.slider("Values per row", 5, 15, 9, 2, key="tv_nvalues")
order_by = s2.radio("Rows", ["most informative first", "index"], key="tv_order")
span = s3.radio(
    "Range",
    ["prior −3..3", "posterior min–max"],
    key="tv_range",
    horizontal=True,
    help=f"posterior: each variable's min..max posterior mean over task {task}'s test images"
    " (disentanglement_lib's choice)",
)
rows = by_kl if order_by == "most informative first" else by_index
ranges = None
if span != "prior −3..3":
    ranges = traversal_panel.per_variable("ranges", run, snap, task, start.expert, model, data)
sweep_at = np.linspace(-3, 3, n_values)
if not rows:
    st.info(f"{run.family}: this expert has no Gaussian latent variables to sweep.")
    st.stop()
imgs, _ = traversal.sweep(model, here, sweep_at, order=rows, ranges=ranges)
labels = [f"{n}[{i}] (KL {kl[n][i]:.2f})" for n, i in rows]
grid_col, in_col = st.columns([5, 1])
grid_col.image(
    images.grid(imgs, n_values, scale=2),
    caption="rows, top to bottom: "
    + ", ".join(labels)
    + (
        "; columns: " + " ".join(f"{v:+.1f}" for v in sweep_at)
        if ranges is None
        else "; columns: each variable's own min..max"
    ),
)
if x is not None:
    in_col.image(images.grid(x, 1, scale=3), caption="input")
d1, d2 = st.columns(2)
d1.download_button(
    "Download PNG", traversal.sweep_png(imgs, n_values), f"traversal-{state_key}.png", "image/png"
)
d2.download_button(
    "Download GIF", traversal.sweep_gif(imgs, n_values), f"traversal-{state_key}.gif", "image/gif"
)
direction_panel.section(run, snap, model, cpu, tests, start, values)
