"""Generation grid: the discrete code along columns, one continuous variable along rows."""

import numpy as np
import streamlit as st

import ui
from lifelong.explore import generation, images, traversal

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Generation grid")
st.caption(
    "Columns: each value of a discrete code (paper 003 Fig. 3, paper 001 Fig. 5b) or, for a"
    " mixture, each expert decoding the same code. Rows: one continuous variable swept;"
    " every other variable is one prior draw, the same in every cell."
)
sources = generation.column_sources(model)
if not sources:
    st.info(
        f"{run.family} has neither a discrete code nor experts: use Latent traversal to sweep"
        " its continuous variables."
    )
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 3, 1])
source = c1.selectbox(
    "Columns",
    sources,
    key="gg_source",
    format_func=lambda s: "experts" if s == "experts" else f"code {s}",
)
variables = generation.continuous_variables(model, source)
if not variables:
    st.info("No continuous variable to sweep along the rows.")
    st.stop()
variable = c2.selectbox(
    "Rows: variable", variables, key="gg_var", format_func=lambda v: f"{v[0]}[{v[1]}]"
)
lo, hi = c3.slider("Range", -4.0, 4.0, (-3.0, 3.0), 0.5, key="gg_range")
seed = c4.number_input("Seed", 0, 10_000, 0, key="gg_seed")
n_rows = st.slider("Rows", 3, 15, 7, key="gg_rows")

imgs, labels = generation.grid(model, source, variable, np.linspace(lo, hi, n_rows), int(seed))
name = f"{run.name}-generation-{source}-{variable[0]}{variable[1]}"
ui.picture(
    images.grid(imgs, len(labels), scale=2),
    name,
    "gg",
    f"columns: {', '.join(labels)}; rows: {variable[0]}[{variable[1]}] from {lo:+.1f} to {hi:+.1f}",
)
per_row = imgs.view(n_rows, len(labels), *imgs.shape[1:]).transpose(0, 1).flatten(0, 1)
st.download_button(
    "GIF (rows as frames)",
    traversal.sweep_gif(per_row, n_rows),
    f"{name}.gif",
    "image/gif",
    icon=":material/download:",
)
