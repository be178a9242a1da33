"""The traversal decoder as an ONNX graph, for the page's in-browser panel (issue 19).

The Latent traversal panel decodes in the browser while a slider is dragged: the decoder of
the chosen expert is exported here from the same wrapper the server's live decoder traces
(traversal._FlatPixels: one flat code [1, D], blocks concatenated in the panel's order ->
uint8 pixels [H, W] or [H, W, 3]) and run by onnxruntime-web in the page. One graph covers
every family through `model.decode`: a mixture's expert (one graph per expert), CPVAE's
additive decoder f_s(z) + f_k(t_k), InfoGAN's generator of (c, d, z), LGM's (z_d, z_c);
a categorical block is part of the code as its one-hot vector (the panel's selector).

`export` checks the graph against the server's decode on a few codes with onnxruntime
(the PyPI package, also what the tests use) before anything is offered to a browser: a
graph that does not give the server's pixels (more than one grey level apart, the rounding
of float differences at .5) is refused with ExportError, and the page falls back to the
server decode. The legacy TorchScript exporter (`dynamo=False`) is used: it records the
traced graph the live decoder already relies on and needs only the `onnx` package.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from lifelong.explore import traversal

OPSET = 17
INPUT, OUTPUT = "z", "pixels"
_LOCK = threading.Lock()  # the exporter keeps global state: one export at a time
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: Exported}


class ExportError(Exception):
    """The decoder could not be exported, or its graph does not decode as the server does."""


@dataclass
class Exported:
    """An exported decoder: the ONNX bytes, their sha256, the code layout, the output shape."""

    onnx: bytes
    sha256: str
    names: list[str]
    dims: list[int]
    shape: list[int]  # [H, W] or [H, W, 3]
    max_diff: int | None  # grey levels from the server's decode on the probes; None: unchecked


def probe_codes(dims: list[int], n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """Codes [1, D] the check runs: zeros, the slider range's corners, then n N(0, 4) draws."""
    d = sum(dims)
    g = torch.Generator().manual_seed(seed)
    fixed = [torch.zeros(1, d), torch.full((1, d), 3.0), torch.full((1, d), -3.0)]
    return fixed + [2 * torch.randn(1, d, generator=g) for _ in range(n)]


def _export_bytes(flat: torch.nn.Module, dim: int, device) -> bytes:
    buf = io.BytesIO()
    with _LOCK, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the legacy exporter's deprecation
        torch.onnx.export(
            flat,
            (torch.zeros(1, dim, device=device),),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            do_constant_folding=True,
        )
    return buf.getvalue()


def run_onnx(data: bytes, codes: list[torch.Tensor]) -> list[np.ndarray] | None:
    """The graph's pixels for each code [1, D] through onnxruntime (1 thread), or None when
    onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return [session.run(None, {INPUT: c.cpu().numpy()})[0] for c in codes]


@torch.no_grad()
def export(model, names: list[str], dims: list[int], expert: int | None) -> Exported:
    """Export the decoder of `expert` for codes laid out as `names`/`dims`, checked against
    the server's decode. Raises ExportError (with the reason) when it cannot be done."""
    flat = traversal._FlatPixels(model, names, dims, expert)
    dev = model.device
    try:
        data = _export_bytes(flat, sum(dims), dev)
    except Exception as exc:  # noqa: BLE001 - any exporter failure: the server decodes instead
        raise ExportError(f"the decoder could not be exported to ONNX ({_short(exc)})") from exc
    probes = probe_codes(dims)
    try:
        expected = [flat(p.to(dev)).cpu().numpy() for p in probes]
        got = run_onnx(data, probes)
    except Exception as exc:  # noqa: BLE001 - a graph onnxruntime refuses is no use in a page
        raise ExportError(f"the exported graph could not be checked ({_short(exc)})") from exc
    max_diff = None
    if got is not None:
        if any(
            g.shape != e.shape or g.dtype != e.dtype for g, e in zip(got, expected, strict=True)
        ):
            raise ExportError("the exported graph's output differs in shape from the decoder's")
        max_diff = max(
            int(np.abs(g.astype(int) - e.astype(int)).max())
            for g, e in zip(got, expected, strict=True)
        )
        if max_diff > 1:
            raise ExportError(
                f"the exported graph decodes up to {max_diff} grey levels from the server's decode"
            )
    digest = hashlib.sha256(data).hexdigest()
    return Exported(data, digest, list(names), list(dims), list(expected[0].shape), max_diff)


def cached_export(model, codes: dict[str, list[float]], expert: int | None) -> Exported:
    """`export` once per model (weakly held), code layout and expert; a model whose
    parameters changed in place (trained further) is exported again. An ExportError is
    cached too, so a family that cannot be exported is not retried on every rerun."""
    names, dims = list(codes), [len(v) for v in codes.values()]
    key = (tuple(names), tuple(dims), expert)
    version = tuple(p._version for p in model.parameters())
    cache = _CACHE.setdefault(model, {})
    if key not in cache or cache[key][0] != version:
        try:
            result = export(model, names, dims, expert)
        except ExportError as exc:
            result = exc
        cache[key] = (version, result)
    result = cache[key][1]
    if isinstance(result, ExportError):
        raise result
    return result


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__
