"""The Latent traversal's slider panel, decoding in the browser (issue 19).

One Streamlit custom component (components/traversal/: plain HTML, CSS and an ES module, no
build step; onnxruntime-web vendored beside it) holds the sliders, a selector per categorical
block, a 2-D pad and the image. While a control moves, the page decodes on every animation
frame through the chosen expert's decoder exported to ONNX (lifelong.explore.traversal_onnx);
the server hears of the values only when the drag (or a key press) ends, and then draws the
grid and exports from them. The server does no decoding during a drag.

The exported graph is written gzipped, once per content hash, under
components/traversal/.cache/ (ignored by git) and fetched by the page from there, so its bytes
travel once per panel, not with every rerun. Where the decoder cannot be exported (or the
browser cannot run it) the page falls back to the server-side panel (ui.live_decoder) and
says so; LIFELONG_TRAVERSAL_PANEL=server in the server's environment asks for that panel
everywhere (bench/bench_traversal_browser.py measures both).
"""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

import ui
from lifelong.explore import images, traversal, traversal_onnx

COMPONENT = Path(__file__).resolve().parent / "components" / "traversal"
CACHE = COMPONENT / ".cache"
KEEP_FILES = 128  # exported graphs kept in CACHE (the oldest are removed beyond this)
KEY = "tv_panel"
SWITCH = "LIFELONG_TRAVERSAL_PANEL"  # "server": decode on the server (the pre-issue-19 panel)
FAILED = "tv_panel_failed"  # session key: why this browser could not decode in the page
SOURCES = {"test": "test image", "prior": "prior sample"}  # address word -> the page's choice


def _component():
    # Registered on every run (a no-op after the first): declare_component registers only
    # inside a script run, and AppTest starts a fresh runtime per test.
    return components.declare_component("traversal_panel", path=str(COMPONENT))


def model_file(exported: traversal_onnx.Exported, folder: Path | None = None) -> str:
    """The exported graph, gzipped, as a file of the component's folder (CACHE; written
    once, atomically); returns its URL relative to the component's index.html.

    Gzipped here, once: Streamlit's server gzips other responses on every request (at
    level 9: ~0.5 s of server CPU for a 0.9 MB graph), but not application/gzip ones, and
    the page inflates it with the browser's DecompressionStream. Weights stored as float16
    shrink by ~40 % (0.89 -> 0.59 MB for the default decoder at level 1, in 40 ms)."""
    folder = folder or CACHE
    path = folder / f"{exported.sha256}.onnx.gz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(gzip.compress(exported.onnx, compresslevel=1, mtime=0))
        os.replace(tmp, path)
        old = sorted(folder.glob("*.onnx.gz"), key=lambda p: p.stat().st_mtime)
        for stale in old[:-KEEP_FILES]:
            stale.unlink(missing_ok=True)
    return f"{folder.name}/{path.name}"


@st.cache_data(max_entries=64, show_spinner=False)
def _per_variable(
    what: str, path: str, mtime: float, snap: int, task: int, expert, _model, _x
) -> dict[str, list]:
    fn = traversal.informativeness if what == "kl" else traversal.posterior_ranges
    return fn(_model, _x, expert)


def per_variable(what: str, run, snap: int, task: int, expert, model, x) -> dict[str, list]:
    """traversal.informativeness ("kl") or posterior_ranges ("ranges") of task `task`'s test
    images `x`, computed once per run, snapshot, task and expert: a drag's end reruns the
    page, and these encode up to 512 images each time otherwise."""
    mtime = ui._mtime(run.path)
    return _per_variable(what, str(run.path), mtime, snap, task, expert, model, x)


def _browser_value(state_key: str) -> dict | None:
    """The component's last value if it belongs to this input/expert/snapshot."""
    value = st.session_state.get(KEY)
    if isinstance(value, dict) and value.get("state") == state_key:
        return value
    return None


def selection_text(source: str, task: int, index: int, choice) -> str:
    """The page's input and expert for the address: `test.0.5.routed`, `prior.1.3.2`."""
    short = next(k for k, v in SOURCES.items() if v == source)
    return f"{short}.{task}.{index}.{choice}"


def restore_selection(sizes: list[int], expert_options: list) -> None:
    """On the session's first visit of the page, the input and expert the address names
    (?tv=..., selection_text), given as the widgets' values before they are drawn; an
    address naming what this run does not have is ignored. `sizes`: images per task."""
    if "tv_source" in st.session_state:
        return
    parts = str(st.query_params.get("tv") or "").split(".")
    options = {str(o): o for o in expert_options}
    if len(parts) != 4 or parts[0] not in SOURCES or parts[3] not in options:
        return
    if not (parts[1].isdigit() and parts[2].isdigit()):
        return
    task, index = int(parts[1]), int(parts[2])
    if task < len(sizes) and index < sizes[task]:
        st.session_state.update(
            tv_source=SOURCES[parts[0]], tv_task=task, tv_index=index, tv_expert=options[parts[3]]
        )


def panel(
    model, start: traversal.Start, state_key: str, pad=None, address: str | None = None
) -> dict[str, list[float]]:
    """Show the panel for `start`; returns the codes it holds now (block -> [d]), the values
    the grid and exports below should use. `pad`: the (block, index) pair the 2-D pad moves
    first. Values are kept per `state_key` in session state. `address`: the page's
    selection_text; the address bar then carries it and the values (?tv=...&z=...), and a
    first visit of that selection starts from the address's values."""
    start_codes = traversal.panel_codes(model, start)
    kinds = {b.name: b.kind for b in model.latent_blocks()}
    vkey = f"{state_key}-values"
    if vkey not in st.session_state:
        linked = None
        if address and st.query_params.get("tv") == address:
            linked = traversal.codes_from_text(st.query_params.get("z"))
            linked = traversal.checked_values(linked, start_codes, kinds)
        st.session_state[vkey] = linked or _copy(start_codes)
    values = st.session_state[vkey]
    _show(model, start, state_key, start_codes, values, kinds, pad)
    if address:  # the address follows the panel (after its values are up to date)
        for param, text in (("tv", address), ("z", traversal.codes_text(values))):
            if st.query_params.get(param) != text:
                st.query_params[param] = text
    return values


def _show(model, start, state_key, start_codes, values, kinds, pad) -> None:
    sent = _browser_value(state_key)
    if sent and sent.get("failed") and FAILED not in st.session_state:
        st.session_state[FAILED] = str(sent["failed"])[:200]
    if sent and (new := traversal.checked_values(sent.get("values"), start_codes, kinds)):
        values.update(new)

    reason = st.session_state.get(FAILED)
    reason = f"this browser could not run the decoder ({reason})" if reason else None
    if os.environ.get(SWITCH) == "server":
        reason = f"in-page decoding is turned off on this server ({SWITCH}=server)"
    exported = None
    if reason is None:
        try:
            exported = traversal_onnx.cached_export(model, start_codes, start.expert)
            url = model_file(exported)
        except traversal_onnx.ExportError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"the exported decoder could not be stored ({exc.strerror or exc})"
    if exported is None or reason:
        st.caption(f"Decoding on the server, one rerun per slider step: {reason}.")
        ui.live_decoder(model, traversal.Start(start.expert, values, start.routed), state_key)
        return

    decoder = traversal.live_decoder(model, start_codes, start.expert)
    blocks = [
        {"name": n, "dim": len(v), "kind": kinds.get(n, "gaussian")} for n, v in start_codes.items()
    ]
    _component()(
        state=state_key,
        blocks=blocks,
        values=values,
        start=start_codes,
        model=url,
        shape=exported.shape,
        image=images.png_data_url(decoder(values)),
        pad=[list(p) for p in pad] if pad else None,
        key=KEY,
        default=None,
    )


def _copy(codes: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: list(v) for k, v in codes.items()}
