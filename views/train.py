"""Train: start `python -m lifelong train` as a background job, watch it, cancel or resume it."""

import uuid

import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from lifelong import data as ldata
from lifelong import models
from lifelong.explore import images, overview
from lifelong.train import jobs

MAIN = ("n_experts", "n_components", "latent_dim", "hidden", "channels", "lr", "beta", "gamma")

st.title("Train")
st.caption(
    f"Each job is a separate `python -m lifelong train` process writing "
    f"`{jobs.train_root()}/NAME`; it appears in the run picker as it goes, and a reload of "
    "this page (same address) finds its jobs again."
)
# the session's jobs: its id lives in the address (a reload keeps it) and in session state
# (navigating to another page and back drops the address's query)
sid = st.query_params.get("session") or st.session_state.get("tr_sid") or uuid.uuid4().hex[:12]
st.query_params["session"] = st.session_state["tr_sid"] = sid

c1, c2 = st.columns([1, 3])
family = c1.selectbox("Family", models.keys(), key="tr_family")
c2.caption(models.DESCRIPTIONS.get(family, ""))
st.session_state.setdefault("tr_tasks", "digits:classes=0-4,digits:classes=5-9")


def _picked():
    st.session_state["tr_tasks"] = ",".join(st.session_state["tr_pick"])


st.multiselect(
    "Datasets, in order", [d["name"] for d in ldata.datasets()], key="tr_pick", on_change=_picked
)
tasks = st.text_input(
    "Task sequence",
    key="tr_tasks",
    help="Comma-separated; transforms after colons: invert, rotate=DEG, permute=SEED, "
    "classes=0-4, size=32, rgb. E.g. digits:classes=0-4,digits:classes=5-9,digits:invert. "
    f"Datasets from files (path=DIR) are read only inside the data roots: "
    f"{', '.join(str(r) for r in ldata.data_roots())} (more with LIFELONG_DATA_ROOTS).",
)
error = None
try:  # names and options, and every dataset path inside the data roots (others: one line)
    ldata.check_roots(tasks)
except ldata.DataError as exc:
    error = str(exc)
    st.error(error)

opts = dict(models.options(family))
shown = [k for k in MAIN if type(opts.get(k)) in (int, float)]
overrides = []
for col, k in zip(st.columns(max(len(shown), 1)), shown, strict=False):
    d = opts[k]
    if isinstance(d, int):
        v = col.number_input(k, 0, 4096, d, 1, key=f"tr_{family}_{k}")
    else:
        v = col.number_input(k, 0.0, None, float(d), d / 10 or 0.1, "%g", key=f"tr_{family}_{k}")
    if v != d:
        overrides.append(f"{k}={v}")
rest = ", ".join(f"{k}={v}" for k, v in opts.items() if k not in (*shown, "image_shape", "n_tasks"))
more = st.text_input("Other options", key="tr_more", placeholder="key=value, ...", help=rest)
c = st.columns(5)
epochs = c[0].number_input("Epochs per task", 1, 1000, 3, key="tr_epochs")
batch = c[1].number_input("Batch size", 1, 4096, 128, key="tr_batch")
seed = c[2].number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed")
devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
device = c[3].selectbox("Device", devices, key="tr_device")
name = c[4].text_input("Run name", key="tr_name", placeholder=f"{family}-<date>-<time>")
start = st.button(
    "Start", type="primary", icon=":material/play_arrow:", disabled=bool(error), key="tr_start"
)
if start and not error:  # checked in this same run, just above: nothing launches past it
    try:
        pairs = overrides + [p.strip() for p in more.split(",") if p.strip()]
        kw = dict(device=device, seed=int(seed), batch_size=int(batch), overrides=pairs)
        job = jobs.start(family, tasks, int(epochs), name, session=sid, **kw)
        st.toast(f"Started {job.name}")
    except ValueError as exc:  # DataError, JobError and bad options: one line each
        st.error(str(exc))

every = st.toggle("Jobs of every session", key="tr_all")
listed = jobs.list_jobs(session=None if every else sid)
full = {"run": True}  # the fragment's closure: False when it reruns on its own


@st.cache_data(max_entries=64, show_spinner=False)
def thumbnail(path: str, k: int, mtime: int) -> bytes:
    return images.png_bytes(overview.snapshot_preview(path, k, scale=2))


def eta(s: float | None) -> str:
    return (
        "" if s is None else f" · about {s / 60:.0f} min left" if s > 90 else f" · {s:.0f} s left"
    )


def show(job: jobs.Job) -> tuple:
    p = jobs.poll(job)
    with st.container(border=True):
        st.markdown(f"**{job.name}** · {job.family} · {', '.join(job.tasks)} · {job.epochs} epochs")
        if p.status == "running":
            st.progress(p.fraction, text=p.text + eta(p.eta))
            if st.button("Cancel", key=f"tr_cancel_{job.name}", icon=":material/stop:"):
                jobs.cancel(job)
                st.rerun(scope="app")
        elif p.status == "failed":
            st.error(f"{job.name} failed: {p.error}")
        elif p.status == "cancelled":
            st.warning(f"{job.name} was cancelled; resuming continues after its last snapshot.")
        else:
            st.success(f"{job.name} finished in {p.elapsed:.0f} s")
        if p.status in ("failed", "cancelled"):
            if st.button("Resume", key=f"tr_resume_{job.name}", icon=":material/replay:"):
                try:
                    jobs.resume(job)
                except ValueError as exc:
                    st.error(str(exc))
                else:
                    st.rerun(scope="app")
        if p.curves:
            lines = [go.Scatter(x=x, y=y, name=k, mode="lines") for k, (x, y) in p.curves.items()]
            fig = go.Figure(lines)
            fig.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="task")
            st.plotly_chart(fig, key=f"tr_curves_{job.name}")
        cols = st.columns(max(len(job.tasks), 1))
        for i, k in enumerate(p.snapshots):
            snap = job.path / f"task-{k:02d}.safetensors"
            try:
                png = thumbnail(str(job.path), k, snap.stat().st_mtime_ns)
            except (OSError, ValueError):  # RunError: being rewritten by a resume
                continue  # shown on a later poll
            cols[i % len(cols)].image(png, caption=f"after task {k}: inputs over reconstructions")
    return job.name, p.status, len(p.snapshots), (job.path / "manifest.json").exists()


@st.fragment(run_every=1.0 if any(j.status == "running" for j in listed) else None)
def panel():
    ui.torch_for_this_thread()
    mine = jobs.list_jobs(session=None if every else sid)
    if not mine:
        st.info("No jobs yet in this session.")
    state = [show(j) for j in reversed(mine[-5:])]
    if len(mine) > 5:
        st.caption(f"{len(mine) - 5} older jobs are in {jobs.train_root()}.")
    # a new snapshot or an ended job: rerun the app, so the run picker shows it at once
    if not full["run"] and state != st.session_state.get("tr_state"):
        st.session_state["tr_state"] = state
        st.rerun(scope="app")
    st.session_state["tr_state"] = state


st.subheader("Jobs")
panel()
full["run"] = False
