"""The conformance kit: the checks a family must pass to work with the trainer, the run format,
the metrics and the pages (DESIGN.md, "Model interface"). The project's own families run it
in the suite (tests/models/test_conformance.py); a plugin author runs it in theirs:

    from lifelong.testing import check_family
    def test_my_family(tmp_path):
        check_family("mypackage.model:MyModel", tmp_path)

Each check raises ConformanceError with one line naming the method and what it returned.
The page checks are the app's own tests (tests/app/test_app_families.py runs every page on a
tiny run of every family); this module stays free of Streamlit.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lifelong import models, runs

TINY_TASKS = ["digits:classes=0-1", "digits:classes=2-3"]
TINY_NETS = {"latent_dim": 2, "hidden": 16, "channels": 4}


class ConformanceError(AssertionError):
    """A family that breaks the model interface; the message says where."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ConformanceError(what)


def _images(t, what: str, shape: tuple) -> None:
    _check(isinstance(t, torch.Tensor), f"{what} returned {type(t).__name__}, not a tensor")
    _check(tuple(t.shape) == shape, f"{what} has shape {tuple(t.shape)}, expected {shape}")
    _check(bool(torch.isfinite(t).all()), f"{what} holds non-finite values")
    _check(float(t.min()) >= 0 and float(t.max()) <= 1, f"{what} leaves [0, 1]")


@torch.no_grad()
def check_interface(model: models.GenerativeModel, n: int = 4) -> None:
    """Shapes and ranges of every inference method of a built model (eval mode)."""
    c, h, w = model.config.image_shape
    x = torch.rand(n, c, h, w)
    blocks = model.latent_blocks()
    _check(bool(blocks), "latent_blocks() is empty")
    for b in blocks:
        _check(b.dim > 0 and b.kind in ("gaussian", "categorical"), f"latent block {b} invalid")
    experts = model.experts()
    first = experts[0] if experts else None
    post = model.encode(x, first) if experts else model.encode(x)
    codes = {}
    for b in blocks:
        if experts and b.owner not in (first, "shared", None):
            continue
        p = post.get(b.name)
        _check(isinstance(p, dict), f"encode(x) has no entry for block {b.name!r}")
        key = "mu" if b.kind == "gaussian" else "logits"
        _check(key in p, f"encode(x)[{b.name!r}] lacks {key!r}")
        _check(tuple(p[key].shape) == (n, b.dim), f"encode(x)[{b.name!r}][{key!r}] shape")
        codes[b.name] = p["mu"] if key == "mu" else torch.softmax(p["logits"], -1)
    out = model.decode(codes, first) if experts else model.decode(codes)
    _images(out, "decode(codes)", (n, c, h, w))
    _images(model.reconstruct(x), "reconstruct(x)", (n, c, h, w))
    _images(model.sample(3), "sample(3)", (3, c, h, w))
    _images(model.sample(3, task=0), "sample(3, task=0)", (3, c, h, w))
    score = model.score(x)
    _check(tuple(score.shape) == (n,), f"score(x) has shape {tuple(score.shape)}, expected ({n},)")
    route = model.route(x)
    if experts:
        _check(route is not None, "a mixture's route(x) returned None")
        _check(tuple(route.shape) == (n, len(experts)), "route(x) is not [N, experts]")
        _check(bool(torch.allclose(route.sum(1), torch.ones(n), atol=1e-4)), "route rows sum")
    else:
        _check(route is None, "route(x) of a family without experts should be None")


def check_loss(model: models.GenerativeModel) -> None:
    """loss() returns named scalar terms with a finite total that has a gradient."""
    c, h, w = model.config.image_shape
    batch = {"x": torch.rand(4, c, h, w), "y": torch.zeros(4, dtype=torch.long)}
    batch["task"] = torch.zeros(4, dtype=torch.long)
    model.train()
    terms = model.loss(batch, 0)
    _check(isinstance(terms, dict) and "total" in terms, "loss() has no 'total' term")
    total = terms["total"]
    ok = total.dim() == 0 and math.isfinite(float(total.detach()))
    _check(ok, "loss()['total'] is not a finite scalar")
    _check(total.requires_grad, "loss()['total'] has no gradient")
    model.eval()


def check_run(key: str, workdir: Path, overrides: dict | None = None) -> Path:
    """A tiny two-task run through the trainer: events are dicts with a "type", every
    snapshot loads, and a model saved and loaded through the run format is bit-identical."""
    from lifelong.train import TrainArgs, train

    out = Path(workdir) / "conformance-run"
    args = TrainArgs(
        model=key,
        tasks=list(TINY_TASKS),
        out=out,
        epochs=1,
        batch_size=64,
        device="cpu",
        overrides=dict(TINY_NETS if overrides is None else overrides),
        eval_samples=16,
        threads=1,
    )
    train(args, callbacks=[])
    run = runs.open_run(out)
    for e in run.events:
        _check(isinstance(e.get("type"), str), f"a task-boundary event has no type: {e}")
    _check(run.snapshots == sorted(run.snapshots) and run.snapshots, "no snapshots")
    for k in run.snapshots:
        model = run.load_model(k)
    # the last snapshot saved again and loaded: the same tensors, bit for bit
    again = Path(workdir) / "conformance-copy"
    again.mkdir()
    manifest = runs.new_manifest(key, model.config_dict(), list(TINY_TASKS), 0, "cpu", {})
    runs.save_snapshot(again, manifest, model, run.snapshots[-1], {})
    runs.write_manifest(again, manifest)
    back = runs.open_run(again).load_model(run.snapshots[-1])
    for name, value in model.state_dict().items():
        other = back.state_dict()[name]
        _check(torch.equal(value, other), f"tensor {name} differs after save and load")
    return out


def check_family(key: str, workdir: Path, overrides: dict | None = None) -> None:
    """Every check above on family `key` (a built-in key, an installed plugin's, or
    "package.module:Class"), with tiny networks (`overrides` replaces them)."""
    from lifelong.train.trainer import build_config

    if ":" in key:
        models.register(key)
    torch.manual_seed(0)
    config = build_config(
        key, list(TINY_TASKS), dict(TINY_NETS if overrides is None else overrides)
    )
    model = models.build(key, config).eval()
    check_interface(model)
    check_loss(model)
    check_run(key, workdir, overrides)
