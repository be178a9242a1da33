"""Interpolation: a path between two inputs, through one expert, every expert or a mismatch."""

import streamlit as st

import ui
from lifelong.explore import images, interpolate, traversal

run, snap = st.session_state.get("selection") or ui.sidebar()
model = ui.model_or_stop(run, snap)
st.title("Interpolation")
st.caption(
    "Encode two inputs, walk between their codes and decode every step (paper 000 Fig. 6);"
    " discrete codes stay fixed at one endpoint (paper 001 Fig. 8)."
)
tests = ui.test_sets(run)
shape = tuple(tests[0].x.shape[1:])


def pick(col, side: int, default_task: int):
    with col:
        source = st.radio("Input", ["test image", "upload"], key=f"ip_src{side}", horizontal=True)
        if source == "upload":
            up = st.file_uploader("Any image", key=f"ip_up{side}", type=None)
            if up is None:
                st.info("Choose a picture (PNG, JPEG, ... any size or mode).")
                return None
            try:
                x, steps = interpolate.from_upload(up.getvalue(), shape)
            except interpolate.InputError as exc:
                st.error(f"{up.name}: {exc}")
                return None
            st.caption(" → ".join(steps))
        else:
            t = st.selectbox(
                "Task",
                range(len(run.tasks)),
                default_task,
                key=f"ip_task{side}",
                format_func=lambda j: f"{j}: {run.tasks[j]}",
            )
            i = st.number_input("Image", 0, len(tests[t]) - 1, side, key=f"ip_idx{side}")
            x = tests[t].x[i : i + 1]
        st.image(images.grid(x, 1, scale=3), caption=f"input {side + 1}", output_format="PNG")
        return x.to(model.device)


c0, c1, c2 = st.columns([2, 2, 3])
x0 = pick(c0, 0, 0)
x1 = pick(c1, 1, min(1, len(run.tasks) - 1))
with c2:
    steps = st.slider("Steps", 3, 16, 8, key="ip_steps")
    kind = st.radio("Path", ["linear", "slerp"], horizontal=True, key="ip_kind")
    experts = model.experts()
    mode = "single"
    if experts:
        mode = st.radio(
            "Decode through",
            ["one expert", "every expert", "mismatched"],
            key="ip_mode",
            help="one expert: paper 000 Fig. 6; mismatched: paper 002 eq. 36",
        )
    has_discrete = any(b.kind == "categorical" for b in model.latent_blocks())
    fixed = 0
    if has_discrete:
        fixed = st.radio(
            "Hold the discrete code of",
            [0, 1],
            key="ip_fixed",
            format_func=lambda s: f"input {s + 1}",
            horizontal=True,
        )
if x0 is None or x1 is None:
    st.stop()

if mode == "single":
    strips = {"": interpolate.strip(model, x0, x1, steps, kind, fixed_from=fixed)}
elif mode == "one expert":
    best = interpolate.pair_expert(model, x0, x1)
    k = c2.selectbox(
        "Expert",
        experts,
        experts.index(best),
        key="ip_expert",
        format_func=lambda e: f"expert {e}" + (" (eq. 7 for the pair)" if e == best else ""),
    )
    strips = {f"expert {k}": interpolate.strip(model, x0, x1, steps, kind, k, k, fixed)}
elif mode == "every expert":
    strips = {
        f"expert {k}": interpolate.strip(model, x0, x1, steps, kind, k, k, fixed) for k in experts
    }
else:
    e1, e2 = c2.columns(2)
    enc = e1.selectbox("Encoder", experts, key="ip_enc", format_func=lambda e: f"expert {e}")
    dec = e2.selectbox(
        "Decoder",
        experts,
        min(1, len(experts) - 1),
        key="ip_dec",
        format_func=lambda e: f"expert {e}",
    )
    strips = {
        f"encoder {enc} → decoder {dec}": interpolate.strip(
            model, x0, x1, steps, kind, enc, dec, fixed
        )
    }

for label, s in strips.items():
    key = label.replace(" ", "") or "strip"
    ui.picture(
        images.grid(s, steps, scale=3), f"{run.name}-interpolation-{key}", key, label or None
    )
    st.download_button(
        "GIF",
        traversal.sweep_gif(s, steps, scale=4),
        f"{run.name}-interpolation-{key}.gif",
        "image/gif",
        key=f"gif-{key}",
        icon=":material/download:",
    )
