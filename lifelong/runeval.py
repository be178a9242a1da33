"""`python -m lifelong eval`: metrics of a run computed from its snapshots, stored in its
manifest under "eval" so the app shows them without recomputing (storing and printing them:
lifelong/evalreport.py).

manifest["eval"] = {"format": "lifelong-eval/1", "metrics": {name: {"value": ..., "key": {...},
"computed": iso time}}}. The key holds the parameters (k, samples, seed), the sha256 of every
snapshot file and, for the Frechet distance, of the classifier: a stored value is reused only
while its key still matches, so a resumed (longer) run or another classifier recomputes.

Matrix metrics are computed on every snapshot ([after task k][task j], like the forgetting
matrices); MIG and DCI on the last snapshot, for every task with ground-truth factors.
"""

from __future__ import annotations

from datetime import UTC, datetime

import torch

from lifelong import metrics, runs
from lifelong.likelihood import Unsupported

METRICS, MATRIX, NEEDS_CLASSIFIER = (
    metrics.EVAL_METRICS,
    metrics.EVAL_MATRIX,
    metrics.EVAL_NEEDS_CLASSIFIER,
)
stored_eval = runs.stored_eval  # noqa: F401 (re-exported for the command line)
DRIFT_IMAGES = 10_000  # test images of a task the drift follows (Fashion-MNIST's whole split)


def parse_metrics(text: str | None) -> list[str]:
    """'iwelbo,ssim' -> names; 'all' -> every name; None/'' -> []. ValueError lists the valid."""
    if not text:
        return []
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if "all" in names:
        return list(METRICS)
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise ValueError(
            f"unknown metric {bad[0]!r}; valid: {', '.join(METRICS)}, all (comma-separated)"
        )
    return list(dict.fromkeys(names))


def _key(run, name: str, params: dict, classifier=None) -> dict:
    used = {
        "iwelbo": ("k", "samples", "seed"),
        "frechet": ("samples", "seed"),
        "ari": ("samples", "seed"),
        "ssim": ("samples",),
        "transfer": ("samples",),
        "mig": ("seed",),
        "dci": ("seed",),
        "forward": (),
        "populations": ("k", "samples", "seed"),
        "components": ("seed",),  # 512 images over every task
        "task_shares": ("samples", "seed"),
        "fitting": ("samples", "seed"),
        "drift": (),  # every test image (up to DRIFT_IMAGES a task), no sampling
    }[name]
    key = {
        "params": {p: params[p] for p in used},
        "snapshots": [s.get("sha256") for s in run.manifest["snapshots"]],
    }
    if name in NEEDS_CLASSIFIER:
        key["classifier"] = None if classifier is None else classifier.meta["sha256"]
    return key


def evaluate_run(
    run,
    names: list[str],
    k: int = 50,
    samples: int = 256,
    seed: int = 0,
    recompute: bool = False,
    classifier=None,
    log=None,
    require_classifier: bool = False,
) -> dict:
    """Compute (or reuse from the manifest) the metrics `names` of `run`. Returns {"values":
    {name: value}, "stored": [names reused], "skipped": {name: reason}, "entries": {name:
    manifest entry}}; nothing is written (see `store`). Without the feature classifier the
    Frechet distance is skipped with the loader's message, or that ClassifierError is raised
    when `require_classifier` (the user named the metric)."""
    from lifelong import evaldata
    from lifelong.data import DataError, load_task

    log = log or (lambda msg: None)
    params = {"k": k, "samples": samples, "seed": seed}
    out = {"values": {}, "stored": [], "skipped": {}, "entries": {}}
    if set(names) & set(NEEDS_CLASSIFIER) and classifier is None:
        from lifelong.classifier import ClassifierError, classifier_path_for, load_classifier

        try:  # a Fashion-MNIST run is scored with the Fashion classifier (classifier.py)
            classifier = load_classifier(classifier_path_for(run.tasks))
        except ClassifierError as exc:
            if require_classifier:
                raise
            out["skipped"] |= {n: str(exc) for n in names if n in NEEDS_CLASSIFIER}
            names = [n for n in names if n not in NEEDS_CLASSIFIER]
    saved = run.manifest.get("eval", {}).get("metrics", {})
    todo = []
    for name in names:
        key = _key(run, name, params, classifier)
        if not recompute and saved.get(name, {}).get("key") == key:
            out["values"][name] = saved[name]["value"]
            out["stored"].append(name)
        else:
            todo.append((name, key))
    if not todo:
        return out
    if not run.snapshots:
        out["skipped"] |= {n: "the run has no finished snapshot yet" for n, _ in todo}
        return out
    data_seed = run.manifest.get("seed", 0)
    # the datasets where they are on this machine, else the run's stored evaluation images
    tests, notes = evaldata.test_sets(run)
    for line in notes:
        log(f"test data of {line}")
    values, skipped = {}, {}
    todo_names = [n for n, _ in todo]
    matrix = [n for n in todo_names if n in MATRIX]
    probe = None
    if "task_shares" in matrix:
        from lifelong.evaluation import TaskProbe

        try:
            trains = [load_task(t, "train", data_seed) for t in run.tasks]
            probe = TaskProbe(trains, classifier, seed=seed)
            values["task_shares"] = {"per_task": [], "probe_accuracy": probe.accuracy(tests)}
        except Unsupported as exc:
            skipped["task_shares"] = str(exc)
            matrix.remove("task_shares")
        except DataError as exc:  # the probe learns from training images: not stored
            skipped["task_shares"] = f"needs the training data, not on this machine ({exc})"
            matrix.remove("task_shares")
    drift = _Drift(tests) if "drift" in matrix else None
    for after in run.snapshots:
        if not matrix:
            break
        log(f"snapshot after task {after}: {', '.join(matrix)}")
        model = run.load_model(after)
        for name in list(matrix):
            try:
                if name == "drift":
                    drift.add(model)
                    continue
                row = _matrix_row(name, model, tests, after, params, classifier, probe)
            except (Unsupported, NotImplementedError) as exc:
                skipped[name] = _reason(model, exc)
                matrix.remove(name)
                values.pop(name, None)
                continue
            _append(values, name, row)
    if drift is not None and "drift" in matrix:
        values["drift"], out["extras"] = drift.result(run, tests)
    last = run.load_model(run.snapshots[-1])
    for name in ("mig", "dci"):
        if name in todo_names:
            log(f"{name} on the last snapshot")
            try:
                values[name] = _disentanglement(name, last, tests, seed)
            except (Unsupported, NotImplementedError) as exc:
                skipped[name] = _reason(last, exc)
    if "populations" in todo_names:
        log(f"populations on the last snapshot (eqs. 7-8, {k} importance samples)")
        try:
            values["populations"] = _populations(last, tests, params)
        except Unsupported as exc:
            skipped["populations"] = _reason(last, exc)
    if "components" in todo_names:
        from lifelong.explore.dependence import components

        log("components on the last snapshot (dHSIC, mixture vs each component)")
        try:
            values["components"] = components(last, tests, 512, seed)
        except ValueError as exc:
            skipped["components"] = f"{last.family}: {exc}"
    if "forward" in todo_names:
        log("forward transfer: evaluating the untrained model")
        values["forward"] = _forward(run, tests)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for name, key in todo:
        if name in values:
            out["values"][name] = values[name] = _jsonable(values[name])
            out["entries"][name] = {"value": values[name], "key": key, "computed": now}
    out["skipped"] |= skipped
    return out


class _Drift:
    """The codes of every test image at each snapshot, in the drift's space
    (embedding.drift_space): the latent drift matrix and the Latent map's time-lapse, one
    PCA of the same codes (stored beside the last snapshot by `store`)."""

    def __init__(self, tests):
        from lifelong.embedding import every_point

        self.tests, self.points = tests, every_point(tests, DRIFT_IMAGES)
        self.codes, self.experts, self.space = [], [], "routed"

    def add(self, model) -> None:
        from lifelong.embedding import codes_of, drift_space

        self.space = drift_space(model)
        try:
            c, e = codes_of(model, self.tests, self.points, self.space)
        except NotImplementedError:
            raise Unsupported(f"{model.family} has no encoder to read codes from") from None
        self.codes.append(c)
        self.experts.append(e)

    def result(self, run, tests) -> tuple[dict, dict]:
        from lifelong.explore import timelapse

        tl = timelapse.from_codes(
            self.points, self.codes, self.experts, run.snapshots, len(tests), self.space, "PCA"
        )
        counts = torch.bincount(self.points["task"], minlength=len(tests)).tolist()
        value = {"per_task": tl.drift, "space": self.space, "images": counts}
        extras = {timelapse.KIND: (run.snapshots[-1], timelapse.to_tensors(tl, tests))}
        return value, extras


def _jsonable(value):
    """Nested lists/dicts with NaN/inf floats replaced by None (the manifest is strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return metrics.finite(value)
    return value


def _reason(model, exc) -> str:
    text = str(exc) or type(exc).__name__
    return text if model.family in text else f"{model.family}: {text}"


def _append(values: dict, name: str, row) -> None:
    if name in ("frechet", "fitting"):
        seen, per = row
        v = values.setdefault(name, {"seen": [], "per_task": []})
        v["seen"].append(seen)
        v["per_task"].append(per)
    elif name == "task_shares":
        values[name]["per_task"].append(row)
    else:
        values.setdefault(name, []).append(row)


def _matrix_row(name, model, tests, after, params, classifier, probe=None):
    from lifelong import evaluation as ev

    n, seed = params["samples"], params["seed"]
    if name == "iwelbo":
        return ev.iwelbo_per_task(model, tests, params["k"], n, seed=seed)
    if name == "ssim":
        return ev.ssim_per_task(model, tests, n)
    if name == "frechet":
        return ev.frechet_seen_and_per_task(model, tests, classifier, after + 1, n, seed)
    if name == "fitting":
        return ev.fitting_capacity(model, tests, classifier, after + 1, n, seed)
    if name == "ari":
        return ev.ari_per_task(model, tests, n, seed)
    if name == "task_shares":
        return ev.task_shares(model, tests, probe, n, seed)
    return ev.transfer_matrix(model, tests, n)


def _disentanglement(name, model, tests, seed) -> dict:
    from lifelong import evaluation as ev

    found = {}
    for j, data in enumerate(tests):
        if data.factors is not None:
            res = ev.disentanglement(model, data, j, which=(name,))
            found[str(j)] = {"factor_names": res["factor_names"], **res[name]}
    if not found:
        raise Unsupported("no task has ground-truth factors (train on a shapes task)")
    return found


def _populations(model, tests, params) -> dict:
    """Tables 1-2 of paper 004 on up to `samples` test inputs of every learnt population."""
    from lifelong.explore import sharedprivate as sp

    if not sp.applies(model):
        raise Unsupported("it has no shared and private codes (cpvae)")
    res = sp.scores(model, tests, params["samples"], params["seed"], samples=params["k"])
    return {
        "accuracy": res["accuracy"],
        "per_population": {str(k): v for k, v in res["per_population"].items()},
        "importance_samples": params["k"],
        "n": res["n"],
        "ari": {"rows": res["rows"], "columns": res["columns"], "values": res["ari"]},
    }


def _forward(run, tests) -> dict:
    """Rows of the untrained model (the run's own initial weights: the trainer seeds with the
    run's seed right before building the model) and the forward transfer they give."""
    from lifelong import models
    from lifelong.train.evaluate import evaluate

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.manifest.get("seed", 0))
        model = models.build(run.family, run.config()).eval()
    row = evaluate(model, tests)
    after = run.snapshots
    out = {"initial": {m: row[m] for m in ("mse", "elbo")}}
    for m, higher in (("mse", False), ("elbo", True)):
        out[f"forward_transfer_{m}"] = metrics.forward_transfer(
            run.metric(m), row[m], higher, after
        )
    return out
