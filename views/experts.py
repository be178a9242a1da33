"""Compare experts: the same inputs through every expert, per-expert samples, mismatched pairs."""

import streamlit as st
import torch

import ui
from lifelong.explore import experts, images

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Compare experts")
if not model.experts():
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

out = experts.through_every_expert(model, x)
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
samples = experts.expert_samples(model, n=8)
ui.picture(
    images.grid(torch.cat(list(samples.values())), 8, scale=2),
    f"{run.name}-expert-samples",
    "samples",
    "one row per expert: " + ", ".join(f"expert {k}" for k in samples),
)

st.subheader("Mismatched encoder → decoder")
grid = experts.mismatched(model, x[:1])
kk = len(out["experts"])
ui.picture(
    images.grid(grid.flatten(0, 1), kk, scale=3),
    f"{run.name}-mismatched",
    "mismatched",
    "row i: encoded by expert i; column j: decoded by expert j (the diagonal is each expert's own"
    " reconstruction; paper 002 eq. 36, Figs. 3 and 7)",
)

st.subheader("Each expert's ELBO on each task")
table = experts.scores_per_task(model, tests).tolist()
fig = ui.heatmap(
    table, [f"expert {k}" for k in out["experts"]], [f"{j}: {t}" for j, t in enumerate(run.tasks)]
)
ui.figure(fig, f"{run.name}-expert-elbo", "expert-elbo")
