"""Streamlit glue shared by app.py and the pages: the run picker and cached loaders.

Models load once per process (st.cache_resource, eval mode, 1 torch thread for the interactive
path); test data is cached too. Everything computed lives in lifelong.explore.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from lifelong import data as ldata
from lifelong import evaldata, runs
from lifelong.explore import device as devices
from lifelong.explore import images, traversal
from lifelong.train import jobs

ROOT = Path(__file__).resolve().parent
# numba (UMAP) caches compiled kernels here, so a restarted app does not compile them again
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
RUN_ROOTS = {"pretrained": ROOT / "pretrained", "runs": ROOT / "runs"}


def run_roots() -> dict[str, Path]:
    """Folders whose run sub-folders the picker lists, label -> folder.

    The environment variable LIFELONG_RUN_ROOTS (folders separated by os.pathsep) replaces
    RUN_ROOTS, each labelled by its folder name: tests, the browser test and bench/ use it to
    point the app at throwaway runs instead of pretrained/ and runs/. LIFELONG_TRAIN_ROOT
    (where the Train page's jobs write, lifelong.train.jobs) replaces runs/, or is added to
    LIFELONG_RUN_ROOTS' folders. Read on every call.
    """
    env = os.environ.get("LIFELONG_RUN_ROOTS")
    trained = os.environ.get(jobs.TRAIN_ROOT_ENV) and jobs.train_root()
    if not env:
        return {**RUN_ROOTS, "runs": trained} if trained else RUN_ROOTS
    roots = [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p]
    if trained and trained not in roots:
        roots.append(trained)
    return {p.name or str(p): p for p in roots}


def torch_for_this_thread() -> None:
    """One torch thread and flushed denormals for the calling thread (DESIGN.md).

    Both settings are per thread (OpenMP's thread count, the CPU's denormal flag), and
    Streamlit runs every rerun, fragment reruns included, in a new script thread: so this
    is called on each run (model_or_stop) and at the top of each fragment that computes,
    not only once at import. Costs well under a microsecond.
    """
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


torch_for_this_thread()


def _mtime(path: Path) -> float:
    try:
        return (path / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner=False, max_entries=16)
def _open(path: str, mtime: float) -> runs.Run:
    return runs.open_run(path)


def open_run(path: str | Path) -> runs.Run:
    """The run at `path`, re-read when its manifest changes (a run still training)."""
    return _open(str(path), _mtime(Path(path)))


@st.cache_resource(show_spinner="Loading model ...", max_entries=8)
def _model(path: str, mtime: float, after_task: int, device: str = "cpu"):
    return open_run(path).load_model(after_task, device=device)


def load_model(run: runs.Run, after_task: int, device: str | None = None):
    """Snapshot `after_task` of `run`, cached, on the batch device (batch_device()) unless
    `device` names one: "cpu" for a slider's single-image decode (cpu_model)."""
    return _model(str(run.path), _mtime(run.path), after_task, device or batch_device())


def cpu_model(run: runs.Run, after_task: int):
    """The snapshot on the CPU, for single-image work (the traversal panel's decode and its
    ONNX export): the same object as load_model's where the batch device is the CPU."""
    return load_model(run, after_task, "cpu")


DEVICE_KEY = "app_device"  # the sidebar's batch-device setting (only where CUDA is available)


def batch_device() -> str:
    """The device ("cuda" or "cpu") this session's batch work runs on
    (lifelong.explore.device: the sidebar's setting, else LIFELONG_APP_DEVICE, else auto).
    Read on every call."""
    setting = st.session_state.get(DEVICE_KEY)
    return devices.batch_device(os.environ.get(devices.ENV), setting)[0]


def device_setting() -> None:
    """The batch device in the sidebar: a setting only where CUDA is available (a CPU-only
    machine's sidebar does not grow), and one line when LIFELONG_APP_DEVICE is invalid or
    asks for a CUDA device that is not there."""
    env = os.environ.get(devices.ENV)
    if torch.cuda.is_available():
        try:
            default = devices.parse(env)
        except devices.DeviceError:
            default = "auto"
        st.selectbox(
            "Batch device",
            devices.CHOICES,
            index=devices.CHOICES.index(default),
            key=DEVICE_KEY,
            help="where maps, grids, metrics and comparisons compute (auto: the GPU); a "
            f"slider's single image decodes on the CPU. Default: {devices.ENV} or auto.",
        )
    note = devices.batch_device(env, st.session_state.get(DEVICE_KEY))[1]
    if note:
        st.warning(note)


@st.cache_resource(show_spinner="Preparing test data ...", max_entries=32)
def test_data(spec: str, seed: int) -> ldata.TaskData:
    return ldata.load_task(spec, "test", seed)


@st.cache_resource(show_spinner=False, max_entries=64)
def _stored_sample(path: str, mtime: float, task: int) -> evaldata.StoredTask:
    return evaldata.stored(open_run(path), task)


def reads_datasets(run: runs.Run) -> bool:
    """Whether this server reads the dataset files a run names: only for runs this machine
    made, found under a run root (pretrained/, runs/), not uploaded (archive's `.uploaded`
    marker) and not opened by path; and then only inside the data roots (data_allowed).
    Every other run shows its stored evaluation images (lifelong.evaldata)."""
    if (run.path / ".uploaded").exists() or str(run.path) in st.session_state.get("extra_runs", []):
        return False
    here = run.path.resolve().parent
    return any(here == Path(root).resolve() for root in run_roots().values())


def data_allowed(run: runs.Run):
    """allow(spec) -> bool for evaldata.test_sets: a file dataset is read only for a run
    this machine made (reads_datasets) and only inside the configured data roots."""
    if not reads_datasets(run):
        return lambda spec: False

    def allow(spec: str) -> bool:
        try:
            ldata.check_roots([spec])
        except ldata.DataError:
            return False
        return True

    return allow


def test_sets(run: runs.Run, note: bool = True) -> list[ldata.TaskData]:
    """Every task's test data (lifelong.evaldata.test_sets): the dataset where this server
    may read it, else the run's stored sample, said in one caption line when `note`. A run
    with neither gets an error box and st.stop()."""
    try:
        sets, notes = evaldata.test_sets(
            run,
            data_allowed(run),
            load=lambda spec, split, seed: test_data(spec, seed),
            read=lambda r, j: _stored_sample(str(r.path), _mtime(r.path), j),
        )
    except (runs.RunError, ldata.DataError) as exc:
        st.error(str(exc))
        st.stop()
    if note and notes:
        st.caption("Test images: " + "; ".join(notes) + ".")
    return sets


def available_runs() -> dict[str, Path]:
    """Label -> folder for every run under pretrained/ and runs/, plus ones the user added."""
    from lifelong.zoo import ZOO

    order = {z["name"]: i for i, z in enumerate(ZOO)}  # the zoo's own order: L-MVAE first
    found = {}
    for label, root in run_roots().items():
        for p in sorted(
            runs.find_runs(root), key=lambda p: (order.get(p.name, len(order)), p.name)
        ):
            found[f"{label}/{p.name}"] = p
    for p in st.session_state.get("extra_runs", []):
        found[str(p)] = Path(p)
    return found


def openable_runs() -> dict[str, runs.Run]:
    """Label -> Run for every listed run that opens (damaged ones are left out here; the
    sidebar says what is wrong with them)."""
    out = {}
    for label, path in available_runs().items():
        try:
            out[label] = open_run(path)
        except runs.RunError:
            continue
    return out


def heatmap(z, xs, ys, lower_better: bool = False, height: int | None = None):
    """A plotly heatmap of a matrix with its values written in the cells (None = blank)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            colorscale="Viridis",
            reversescale=lower_better,
            text=[[("" if v is None else f"{v:.3g}") for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height or 90 + 60 * len(z),
        margin=dict(l=10, r=10, t=10, b=10),
        yaxis_autorange="reversed",
    )
    return fig


def figure_html(fig) -> str:
    """A plotly figure as one HTML file that opens offline (plotly.js inline, ~4.7 MB)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def figure(fig, name: str, key: str) -> None:
    """Show a plotly figure with a download of it as a self-contained HTML file, made only
    when the button is clicked (plotly.js inline would otherwise travel with every rerun)."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{key}")
    st.download_button(
        "HTML",
        lambda: figure_html(fig),
        f"{name}.html",
        "text/html",
        key=f"html-{key}",
        icon=":material/download:",
        on_click="ignore",
    )


def picture(img: np.ndarray, name: str, key: str, caption: str | None = None) -> None:
    """Show an RGB uint8 image with a PNG download beside its caption."""
    png = images.png_bytes(img)
    # at its own pixel size: grids are upscaled with sharp pixels already, and the browser's
    # smooth stretching would blur them
    st.image(png, caption=caption, output_format="PNG", width=int(img.shape[1]))
    st.download_button(
        "PNG", png, f"{name}.png", "image/png", key=f"png-{key}", icon=":material/download:"
    )


def upload_root() -> Path:
    """Where uploaded runs are unpacked: the `runs` root, else the first listed root."""
    roots = run_roots()
    return roots.get("runs") or next(iter(roots.values()))


def upload_run() -> None:
    """A zipped run folder from elsewhere, validated by lifelong.archive and unpacked under
    upload_root(); it then appears in the run picker. Refusals say exactly why."""
    from lifelong import archive

    up = st.file_uploader("Upload a run (.zip)", type=["zip"], key="run_zip")
    if up is None or st.session_state.get("_uploaded") == up.file_id:
        return
    st.session_state["_uploaded"] = up.file_id
    try:
        dest = archive.import_zip(
            up.getvalue(), upload_root(), fallback_name=Path(up.name).stem, source=up.name
        )
    except archive.ArchiveError as exc:
        st.error(f"{up.name}: {exc}")
        return
    st.session_state["_pick"] = f"{upload_root().name}/{dest.name}"  # picked on the rerun
    st.rerun()


@st.cache_data(max_entries=4, show_spinner="Packing the run ...")
def _zip(path: str, mtime: float) -> bytes:
    from lifelong import archive

    return archive.export_zip(path)


def run_zip(run: runs.Run) -> bytes:
    """The run folder as a zip (its own files only), cached until the manifest changes."""
    return _zip(str(run.path), _mtime(run.path))


def sidebar() -> tuple[runs.Run | None, int | None]:
    """Run and snapshot pickers; stores the choice in session_state for every page."""
    options = available_runs()
    with st.sidebar:
        st.subheader("Run")
        if not options:
            st.info("No runs yet: train one with `python -m lifelong train ...`.")
            return None, None
        labels = list(options)
        if st.session_state.get("_pick") in labels:
            st.session_state["run_label"] = st.session_state.pop("_pick")
        # ?run=LABEL opens that run (a link to a run, like TensorBoard's); the picker keeps the
        # address in step, so the address bar can be copied and shared
        linked = st.query_params.get("run")
        if linked in labels and "run_label" not in st.session_state:
            st.session_state["run_label"] = linked
        elif linked and linked not in labels and "run_label" not in st.session_state:
            st.warning(f"?run={linked[:80]}: no such run on this server; showing {labels[0]}.")
        label = st.selectbox(
            "Run",
            labels,
            key="run_label",
            label_visibility="collapsed",
            format_func=lambda lb: f"{lb} · training" if jobs.is_training(options[lb]) else lb,
        )
        if st.query_params.get("run") != label:
            st.query_params["run"] = label
        other = st.text_input("Open another run folder", key="other_run", placeholder="path/to/run")
        if other and st.session_state.get("_added") != other:
            st.session_state["_added"] = other
            path = Path(other).expanduser()
            try:
                open_run(path)  # a folder that is not a run is refused here, in one line
            except runs.RunError as exc:
                st.error(str(exc))
            else:  # opened, not only listed: the picker moves to it on the rerun
                extra = st.session_state.setdefault("extra_runs", [])
                if str(path) not in extra:
                    extra.append(str(path))
                st.session_state["_pick"] = str(path)
                st.rerun()
        upload_run()
        try:
            run = open_run(options[label])
        except runs.RunError as exc:
            st.error(str(exc))
            return None, None
        if not run.snapshots:
            st.warning(f"{run.name} has no finished task yet.")
            return run, None
        snap = st.select_slider(
            "Snapshot",
            options=run.snapshots,
            value=run.snapshots[-1],
            key=f"snap-{label}",
            format_func=lambda k: f"after task {k}: {run.tasks[k]}",
        )
        st.caption(f"{run.family} · {len(run.tasks)} tasks · {run.manifest.get('status', '')}")
        device_setting()
    return run, snap


def model_or_stop(run: runs.Run | None, snap: int | None):
    """The chosen snapshot's model, or a clear message and st.stop()."""
    torch_for_this_thread()
    if run is None or snap is None:
        st.info("Pick a run with a finished snapshot in the sidebar.")
        st.stop()
    try:
        model = load_model(run, snap)
    except runs.RunError as exc:
        st.error(str(exc))
        st.stop()
    if model.inference_note:  # e.g. InfoGAN: how codes are inferred without an encoder
        st.sidebar.caption(model.inference_note)
    return model


def live_decoder(
    model, start: traversal.Start, state_key: str, on_timing: Callable | None = None
) -> None:
    """One slider per latent variable decoding live, and the decoded image beside them.

    Each slider is its own st.fragment: moving it reruns that fragment alone, which takes the
    moved slider's new value, decodes every slider's value once through the traced decoder
    (traversal.live_decoder) and replaces the image, a data: URL, in a placeholder made
    outside the fragments. A rerun thus costs one widget instead of one per variable
    (bench/bench_traversal.py). Streamlit lets a fragment fill an outside container only if
    it wrote to it during the last full run, so on full runs each fragment reserves the
    placeholder and the image is drawn once, after the sliders.
    `on_timing(t0, t1, t2, t3)`, if given, gets perf_counter stamps of each slider rerun laid
    end to end as start, + the st.slider call, + the decode, end (the benchmark's split; the
    decode actually runs first).
    """
    # The live image is sent at the model's resolution and drawn pixelated by the browser.
    st.html(
        '<style>[data-testid="stImage"] img[src^="data:image/png"]'
        "{image-rendering: pixelated}</style>"
    )
    panel, picture = st.columns([3, 1])
    placeholder = picture.empty()
    initial = {n: [float(np.clip(v, -3, 3)) for v in base] for n, base in start.codes.items()}
    full_run = {"now": True}  # the fragments' closure: False when they rerun on their own
    # Every slider's current value in one plain dict (one session-state lookup per run, not
    # one per variable): each slider writes its own value, the decode reads them all.
    if f"{state_key}-values" not in st.session_state:
        st.session_state[f"{state_key}-values"] = {n: list(v) for n, v in initial.items()}
    values = st.session_state[f"{state_key}-values"]

    decoder = traversal.live_decoder(model, initial, start.expert)

    def show(pixels: np.ndarray) -> None:
        # A data: URL goes to the browser inside the delta: st.image neither re-opens the
        # PNG with PIL to check its size nor files it with the media manager, and the
        # browser needs no second request for it (bench/bench_traversal.py).
        url = images.png_data_url(pixels)  # at the model's resolution: CSS scales it up
        placeholder.image(url, caption="decoded", width="stretch")

    @st.fragment
    def slider(name: str, i: int) -> None:
        t0 = time.perf_counter()
        torch_for_this_thread()  # a fragment rerun runs in a new script thread
        key = f"{state_key}-{name}-{i}"
        if full_run["now"]:
            values[name][i] = st.slider(f"{name}[{i}]", -3.0, 3.0, initial[name][i], 0.05, key=key)
            placeholder.empty()  # reserve the outside placeholder (see above)
            return
        # A rerun of this fragment: the moved slider's new value is in session state before
        # st.slider runs. Decode first, before any delta of this rerun is queued: the
        # server's event loop wakes to send each delta, and would contend for the GIL with
        # the decode's torch calls (bench/bench_traversal.py: ~0.5 ms of a ~1 ms decode).
        values[name][i] = st.session_state.get(key, values[name][i])
        image = decoder(values)
        t1 = time.perf_counter()
        st.slider(f"{name}[{i}]", -3.0, 3.0, initial[name][i], 0.05, key=key)
        t2 = time.perf_counter()
        show(image)
        if on_timing:  # stamps in the documented order: slider, decode, image
            on_timing(t0, t0 + (t2 - t1), t0 + (t2 - t0), time.perf_counter())

    for name, vals in initial.items():
        cols = panel.columns(min(len(vals), 5))
        for i in range(len(vals)):
            with cols[i % len(cols)]:
                slider(name, i)
    full_run["now"] = False
    show(decoder(values))


@st.cache_resource
def _workers() -> tuple[ThreadPoolExecutor, dict]:
    """One worker thread for slow computations (t-SNE, UMAP) and the jobs it has run, shared
    by every session of this server process."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lifelong-job"), {}


def background(key: str, fn: Callable, *args) -> Future:
    """fn(*args) run once per `key` off the script thread; the Future holds the result. A
    failed job is retried on the next call. The newest 32 jobs are kept."""
    pool, jobs = _workers()
    job = jobs.get(key)
    if job is None or (job.done() and job.exception() is not None):
        job = pool.submit(fn, *args)
        job.started = time.time()
        jobs[key] = job
        for old in list(jobs)[:-32]:
            if jobs[old].done():
                del jobs[old]
    return job


def wait_for(job: Future, what: str) -> None:
    """Show a job's progress and rerun the page when it finishes; st.stop() meanwhile. Other
    pages and widgets stay usable: the wait is a fragment polling every second."""

    @st.fragment(run_every=1.0)
    def poll():
        if job.done():
            st.rerun(scope="app")
        with st.status(f"{what} · {time.time() - job.started:.0f} s", state="running"):
            st.write("Computing off the page; you can use other pages meanwhile.")

    poll()
    st.stop()


@st.cache_resource
def warm_up_umap() -> Future:
    """Compile UMAP in a thread of its own, once per process, when the Latent map page first
    opens: by the time a user picks UMAP it is ready (its first call costs ~30 s here)."""
    from lifelong.explore import latentmap

    return ThreadPoolExecutor(1, thread_name_prefix="umap-warm-up").submit(latentmap.warm_up_umap)
