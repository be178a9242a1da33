"""The conformance kit: the checks a family must pass to work with the trainer, the run format,
the metrics and the pages (DESIGN.md, "Model interface"). The project's own families run it
in the suite (tests/models/test_conformance.py); a plugin author runs it in theirs:

    from lifelong.testing import check_family
    def test_my_family(tmp_path):
        check_family("mypackage.model:MyModel", tmp_path)

Each check raises ConformanceError with one line naming the method and what it returned.
The pages are checked by the app's half of the kit, which needs Streamlit and so lives beside
the app (`app_conformance.check_pages(run_dir)` on the run `check_family` returns); this
module stays free of Streamlit.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lifelong import events, models, runs

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


@torch.no_grad()
def check_capabilities(model: models.GenerativeModel) -> None:
    """What `capabilities` declares is what the model does (pages and metrics trust it)."""
    caps = model.capabilities
    _check(isinstance(caps, models.Capabilities), "capabilities is not a Capabilities")
    name = type(model).__name__
    _check(caps.mixture == bool(model.experts()), f"{name}: mixture={caps.mixture} but experts()")
    c, h, w = model.config.image_shape
    x = torch.rand(3, c, h, w)
    if caps.likelihood == "own":
        ll = model.log_likelihood_is(x, 2)
        _check(tuple(ll.shape) == (3,), "log_likelihood_is(x, k) is not [N]")
        _check(bool(torch.isfinite(ll).all()), "log_likelihood_is(x, k) is not finite")
    if caps.populations:
        for method in ("reconstruct_parts", "decode_cross", "swap_shared"):
            _check(callable(getattr(model, method, None)), f"populations=True but no {method}")
    if caps.replay:
        _check(isinstance(model.replayed_samples(), dict), "replayed_samples() is not a dict")
    if caps.sampling:
        _images(model.sample(3), "sample(3)", (3, c, h, w))
        _images(model.sample(3, task=0), "sample(3, task=0)", (3, c, h, w))


def check_hooks(model: models.GenerativeModel, steps: int = 3) -> None:
    """The task hooks return typed events (lifelong/events.py) of kinds the family declares,
    and what is frozen for the second task (requires_grad False once its hook ran) stays
    bit-identical while that task trains."""
    from lifelong import data as ldata

    tasks = [ldata.load_task(t, "train") for t in TINY_TASKS]

    def hook(name: str, t: int) -> None:
        out = getattr(model, name)(t, tasks[t])
        what = f"{name}({t})"
        _check(isinstance(out, list), f"{what} returned {type(out).__name__}, not a list")
        for e in out:
            _check(isinstance(e, events.Event), f"{what} returned {e!r}, not an events.Event")
            _check(not isinstance(e, events.Other), f"{what}: event kind {e.kind!r} undeclared")

    def train(t: int) -> None:
        model.train()
        model.progress = 0.0
        opts = model.make_optimizers()
        for i in range(steps):
            x = tasks[t].x[i * 16 : (i + 1) * 16]
            batch = {"x": x, "y": tasks[t].y[i * 16 : (i + 1) * 16]}
            batch["task"] = torch.full((len(x),), t, dtype=torch.long)
            model.train_step(batch, t, opts)
            model.progress = (i + 1) / steps

    hook("before_task", 0)
    train(0)
    hook("after_task", 0)
    hook("before_task", 1)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train(1)
    for name, before in frozen.items():
        now = dict(model.named_parameters())[name]
        _check(torch.equal(now.detach(), before), f"frozen parameter {name} changed in task 1")
    model.eval()


def check_run(key: str, workdir: Path, overrides: dict | None = None) -> Path:
    """A tiny two-task run through the trainer: its events are typed and of declared kinds,
    every snapshot loads, and a model saved and loaded through the run format is
    bit-identical. Returns the run's folder (for the pages: app_conformance.check_pages)."""
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
        _check(not isinstance(e, events.Other), f"the run holds an undeclared event {e.kind!r}")
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


def check_family(key: str, workdir: Path, overrides: dict | None = None) -> Path:
    """Every check above on family `key` (a built-in key, an installed plugin's, or
    "package.module:Class"), with tiny networks (`overrides` replaces them). Returns the
    tiny run's folder."""
    from lifelong.train.trainer import build_config

    if ":" in key:
        models.register(key)
    torch.manual_seed(0)
    config = build_config(
        key, list(TINY_TASKS), dict(TINY_NETS if overrides is None else overrides)
    )
    model = models.build(key, config).eval()
    check_interface(model)
    check_capabilities(model)
    check_loss(model)
    check_hooks(model)
    return check_run(key, workdir, overrides)
