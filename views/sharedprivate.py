"""Shared / private: CPVAE's shared and private codes, decoded apart, across and swapped."""

import pandas as pd
import streamlit as st

import ui
from lifelong import runs
from lifelong.explore import forgetting, sharedprivate
from lifelong.zoo import ZOO

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Shared / private")
if not sharedprivate.applies(model):
    shipped = [f"pretrained/{z['name']}" for z in ZOO if z["family"] == "cpvae"]
    found = [k for k, r in ui.openable_runs().items() if r.family == "cpvae"]
    where = ", ".join(dict.fromkeys(found + shipped))
    st.info(
        f"This view needs CPVAE's shared and private latent spaces (paper 004): {run.name} is "
        f"a {run.family} model, with no shared/private split. "
        + (
            f"Pick a CPVAE run in the sidebar: {where}."
            if where
            else "Train one: `python -m lifelong train --model cpvae "
            "--tasks textured:classes=0-4,textured:classes=5-9 --out runs/cpvae`."
        )
    )
    st.stop()
st.caption(
    "Each input has a shared code z and a private code t_k of its population k (a task of the"
    " run), decoded additively: f_s(z) + f_k(t_k) in logit space (paper 004 eq. 1)."
)
tests = ui.test_sets(run)
pops = list(range(len(run.tasks)))
learnt = sharedprivate.learnt(model)


def name(k):
    return f"population {k}: {run.tasks[k]}" + ("" if k in learnt else " (not learnt yet)")


c1, c2, c3, c4, c5 = st.columns([3, 3, 1, 1, 2])
pop = c1.selectbox("Inputs of (A)", pops, key="sp_pop", format_func=name)
other = c2.selectbox(
    "Swap with inputs of (B)", pops, (pop + 1) % len(pops), key="sp_other", format_func=name
)
n = int(c3.number_input("Inputs", 2, 16, 8, key="sp_n"))
seed = int(c4.number_input("Draw", 0, 999, 0, key="sp_seed", help="which test inputs"))
classify = c5.toggle(
    "Classify (eqs. 7-8)",
    False,
    key="sp_classify",
    help="decode each input through the population eqs. 7-8 pick, not its known one",
)
v = sharedprivate.view(model, tests, pop, other, n, seed, classify)
tag = f"{run.name}-after{snap}-p{pop}-s{seed}"
used = ", ".join(str(k) for k in v["population"])
st.caption(
    f"Classes of A: {', '.join(tests[pop].classes[c] for c in v['classes'])} · decoded as"
    f" population(s) {used}"
)

st.subheader("Reconstructions (Fig. 2)")
ui.picture(
    v["fig2"]["grid"],
    f"{tag}-parts",
    "sp-fig2",
    "rows: original · full f_s(z) + f_k(t_k) · shared only f_s(z) · private only f_k(t_k)",
)

st.subheader("Through every population's decoder (Fig. 4)")
rows = " · ".join(f"f_s(z) + f_{j}(t)" for j in v["fig4"]["targets"])
ui.picture(
    v["fig4"]["grid"],
    f"{tag}-through",
    "sp-fig4",
    f"rows: original · {rows} · shared only f_s(z); t = each input's own private code",
)

st.subheader("Swapping shared codes")
ui.picture(
    v["swap"]["grid"],
    f"{tag}-swap-p{other}",
    "sp-swap",
    "rows: A · B · A's private part over B's shared code · B's private part over A's shared code",
)

st.subheader("Clustering and classification (Table 1, eqs. 7-8)")
c1, c2 = st.columns([1, 2])
per = int(c1.number_input("Test inputs per population", 50, 1000, 200, 50, key="sp_score_n"))
same_tasks = forgetting.comparable(run, ui.openable_runs())
vaes = {k: r for k, r in same_tasks.items() if r.family == "vae" and r.snapshots}
beside = c2.selectbox(
    "Plain VAE beside it (Table 1's first row)",
    [*vaes, "none"],
    key="sp_vae",
    help="A vae run over the same tasks (e.g. pretrained/vae-grassy beside cpvae-grassy); "
    "its codes are clustered on the same inputs.",
)


@st.cache_data(max_entries=16, show_spinner="k-means on the codes ...")
def scores(path: str, after: int, per: int, seed: int, _model, _tests) -> dict:
    return sharedprivate.scores(_model, _tests, per, seed)


s = scores(str(run.path), snap, per, seed, model, tests)


@st.cache_data(max_entries=16, show_spinner="k-means on the plain VAE's codes ...")
def vae_row(key: tuple, pops: tuple, per: int, seed: int, _model, _tests) -> list[float]:
    return sharedprivate.baseline_ari(_model, _tests, list(pops), per, seed)


if beside != "none":
    other = vaes[beside]
    try:
        baseline = ui.load_model(other, other.snapshots[-1])
    except runs.RunError as exc:  # a damaged VAE run: the table goes on without its row
        st.warning(str(exc))
        baseline = None
if beside != "none" and baseline is not None:
    key = (str(other.path), str(run.path), snap)  # the inputs are this run's test sets
    row = vae_row(key, tuple(sorted(s["within"])), per, seed, baseline, tests)
    s = {**s, "rows": [f"plain VAE ({other.name})", *s["rows"]], "ari": [row, *s["ari"]]}
table = pd.DataFrame(s["ari"], index=s["rows"], columns=s["columns"])
st.dataframe(table.style.format("{:.3f}", na_rep="–"), key="sp_ari")
st.download_button(
    "CSV",
    sharedprivate.ari_csv(s),
    f"{run.name}-after{snap}-ari.csv",
    "text/csv",
    key="sp-ari-csv",
    icon=":material/download:",
)
each = " · ".join(f"population {k} {a:.1%}" for k, a in s["per_population"].items())
st.markdown(
    f"**Population accuracy (eqs. 7-8)**: {s['accuracy']:.1%} over {s['n']} inputs · {each}"
)
st.caption(
    "Adjusted Rand index of k-means clusters (k = number of labels) against the population, the"
    " class, and the class within each population (mean over populations; Table 1's subgroup"
    " discovery). Private codes: every private head concatenated, or the input's own t_k for"
    " the last column. A good split: shared codes carry no population, private codes the"
    " classes."
)
