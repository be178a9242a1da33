"""Compare experts: the same inputs through every expert, per-expert samples, mismatched pairs.

Each expert's ELBO on every task (T x K x 256 ELBOs: 3 s at 10 tasks x 10 experts) is read
from the table the trainer stores beside each snapshot (experts.stored_scores); a run made
before has none and computes it once, under a spinner. What the page computes is cached per
snapshot (st.cache_data), so a rerun or another input reads it back (bench/bench_long.py).
"""

import streamlit as st
import torch

import ui
from lifelong.explore import experts, images, summary


@st.cache_data(max_entries=32, show_spinner=False)  # ~0.8 MB each at 10 experts, 16 images
def through(key: tuple, task: int, first: int, n: int, _model, _x: torch.Tensor):
    return experts.through_every_expert(_model, _x), experts.mismatched(_model, _x[:1])


@st.cache_data(max_entries=16, show_spinner=False)
def samples(key: tuple, _model) -> dict:
    return experts.expert_samples(_model, n=8)


@st.cache_data(max_entries=16, show_spinner="Scoring every expert on every task ...")
def scores(key: tuple, _model, _tests: list) -> list:
    return experts.scores_per_task(_model, _tests).tolist()


run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Compare experts")
if not model.capabilities.mixture:
    st.info(
        f"{run.name} is a {run.family} model with a single latent space:"
        " it has no experts to compare."
    )
    st.stop()
st.caption(
    "Each row decodes the same inputs through one expert; a red frame marks the expert eq. 7"
    " routes that input to (paper 000), and the caption gives each expert's ELBO."
)

tests = ui.test_sets(run)
c1, c2, c3 = st.columns([2, 1, 1])
task = c1.selectbox(
    "Inputs from task",
    range(len(run.tasks)),
    key="ex_task",
    format_func=lambda j: f"{j}: {run.tasks[j]}",
)
first = c2.number_input("First image", 0, len(tests[task]) - 8, 0, key="ex_first")
n = c3.number_input("Images", 1, 16, 8, key="ex_n")
x = tests[task].x[first : first + n].to(model.device)
key = summary.weights_key(run, snap, tests)

out, grid = through(key, task, int(first), int(n), model, x)
ui.picture(images.grid(x, len(x), scale=2), f"{run.name}-inputs", "inputs", "inputs")
holders = model.task_experts()
for row, k in enumerate(out["experts"]):
    routed = out["routed"] == k
    held = [str(j) for j, h in enumerate(holders) if h == k]
    role = f" · holds task {', '.join(held)}" if held else " · free"
    ui.picture(
        images.grid(out["recon"][row], len(x), scale=2, highlight=routed),
        f"{run.name}-expert{k}",
        f"expert-{k}",
        f"expert {k}{role} · ELBO {out['score'][row].mean():.1f} nats"
        f" · routed {int(routed.sum())}/{len(x)}",
    )

st.subheader("Samples from each expert")
drawn = samples(key, model)
ui.picture(
    images.grid(torch.cat(list(drawn.values())), 8, scale=2),
    f"{run.name}-expert-samples",
    "samples",
    "one row per expert: " + ", ".join(f"expert {k}" for k in drawn),
)

st.subheader("Mismatched encoder → decoder")
kk = len(out["experts"])
ui.picture(
    images.grid(grid.flatten(0, 1), kk, scale=3),
    f"{run.name}-mismatched",
    "mismatched",
    "row i: encoded by expert i; column j: decoded by expert j (the diagonal is each expert's own"
    " reconstruction; paper 002 eq. 36, Figs. 3 and 7)",
)

st.subheader("Each expert's ELBO on each task")
stored = experts.stored_scores(run, snap, model, tests)
table = stored.tolist() if stored is not None else scores(key, model, tests)
fig = ui.heatmap(
    table, [f"expert {k}" for k in out["experts"]], [f"{j}: {t}" for j, t in enumerate(run.tasks)]
)
ui.figure(fig, f"{run.name}-expert-elbo", "expert-elbo")
