"""`python -m lifelong eval`: metrics of a run computed from its snapshots, stored in its
manifest under "eval" so the app shows them without recomputing.

manifest["eval"] = {"format": "lifelong-eval/1", "metrics": {name: {"value": ..., "key": {...},
"computed": iso time}}}. The key holds the parameters (k, samples, seed), the sha256 of every
snapshot file and, for the Frechet distance, of the classifier: a stored value is reused only
while its key still matches, so a resumed (longer) run or another classifier recomputes.

Matrix metrics are computed on every snapshot ([after task k][task j], like the forgetting
matrices); MIG and DCI on the last snapshot, for every task with ground-truth factors.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import torch

from lifelong import metrics, runs
from lifelong.likelihood import Unsupported

FORMAT = "lifelong-eval/1"

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


def check_writable(run) -> None:
    """RunError if eval may not write into the run: a run still training rewrites its manifest
    from memory after every task and would drop manifest["eval"]."""
    from lifelong.runs import RunError

    if run.manifest.get("status") == "running":
        raise RunError(f"{run.name}: still training (status running); --write when it is done")


def store(run, result: dict) -> None:
    """Merge computed entries into manifest["eval"], re-reading the manifest right before the
    atomic write so nothing written meanwhile is lost."""
    import json

    from lifelong.runs import write_manifest

    missing = [j for j in range(len(run.tasks)) if str(j) not in run.manifest.get("evaldata", {})]
    tables = _missing_expert_tables(run)
    if not result["entries"] and not missing and not tables:
        return
    path = run.path / "manifest.json"
    manifest = json.loads(path.read_text())
    run.manifest = manifest
    check_writable(run)
    if result["entries"]:
        block = manifest.setdefault("eval", {"format": FORMAT, "metrics": {}})
        block.setdefault("metrics", {}).update(result["entries"])
    for kind, (task, tensors) in result.get("extras", {}).items():  # the drift's time-lapse
        runs.save_extra(run.path, manifest, kind, task, tensors)
    added = add_evaldata(run, manifest)
    if added:
        result.setdefault("evaldata_added", added)
    if tables:
        add_expert_tables(run, manifest, tables)
    write_manifest(run.path, manifest)


def _missing_expert_tables(run) -> list[int]:
    """Snapshots of a mixture without Compare experts' stored table (runs trained before the
    trainer stored it: lifelong.evaluation.EXPERT_TABLE)."""
    from lifelong.evaluation import EXPERT_TABLE

    if not run.snapshots or not run.load_model(run.snapshots[-1]).capabilities.mixture:
        return []
    have = run.manifest.get("extras", {}).get(EXPERT_TABLE, {})
    return [t for t in run.snapshots if str(t) not in have]


def add_expert_tables(run, manifest: dict, snapshots: list[int]) -> list[int]:
    """Store the table for `snapshots`, as the trainer would have, where every task's test
    data is on this machine (the table scores the full test split); [] otherwise."""
    from lifelong import evaluation
    from lifelong.data import DataError, load_task

    try:
        tests = [load_task(t, "test", manifest.get("seed", 0)) for t in run.tasks]
    except DataError:
        return []
    dtype = manifest.get("train", {}).get("store_dtype") or "float32"
    for t in snapshots:
        model = run.load_model(t).eval()
        table = evaluation.expert_elbo_table(model, tests, run.tasks, dtype)
        runs.save_extra(run.path, manifest, evaluation.EXPERT_TABLE, t, table)
    return snapshots


def add_evaldata(run, manifest: dict) -> list[int]:
    """Store the evaluation images of every task the run lacks them for (runs made before
    runs carried them, lifelong.evaldata), from the datasets on this machine; tasks whose
    dataset is absent are left out (RunError would name them when a page needs them)."""
    from lifelong import evaldata
    from lifelong.data import DataError, load_task

    tests = []
    for j, spec in enumerate(run.tasks):
        if str(j) in manifest.get("evaldata", {}):
            tests.append(None)
            continue
        try:
            tests.append(load_task(spec, "test", manifest.get("seed", 0)))
        except DataError:
            tests.append(None)
    added = []
    for j, data in enumerate(tests):
        if data is not None:
            evaldata.write(run.path, manifest, j, data)
            added.append(j)
    return added


# -- printing -------------------------------------------------------------------------------


def _num(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _table(title: str, rows, row_label: str, n_cols: int, labels=None) -> list[str]:
    """Rows named `row_label` + labels[k] (default k), columns task 0 .. n_cols-1."""
    labels = list(range(len(rows))) if labels is None else labels
    lines = [f"\n{title}", "        " + "".join(f"{'task ' + str(j):>10}" for j in range(n_cols))]
    for label, row in zip(labels, rows, strict=False):
        cells = "".join(f"{_num(v, '.4g'):>10}" for v in row)
        lines.append(f"{row_label} {label:<2}" + cells)
    return lines


def format_eval(run, result: dict) -> list[str]:
    """Printable lines for the computed/stored metrics and the skipped ones."""
    lines = []
    t = len(run.tasks)
    after = run.snapshots
    for name, v in result["values"].items():
        tag = " (stored)" if name in result["stored"] else ""
        head = f"{name}{tag}: {METRICS[name]}"
        if name in ("iwelbo", "ssim", "ari"):
            lines += _table(head, v, "after", t, after)
        elif name == "drift":
            lines += _table(head, v["per_task"], "after", t, after)
            lines.append(f"codes: {v['space']}; test images per task: {v['images']}")
        elif name in ("frechet", "fitting"):
            lines += _table(head, v["per_task"], "after", t, after)
            seen = ", ".join(
                f"after {a}: {_num(s, '.4g')}" for a, s in zip(after, v["seen"], strict=False)
            )
            lines.append(f"over seen tasks: {seen}")
        elif name == "transfer":
            lines += _table(head + f" (after task {after[-1]})", v[-1], "expert", t)
        elif name == "task_shares":
            lines += _table(head, v["per_task"], "after", t, after)
            lines.append(f"probe accuracy on real test images: {v['probe_accuracy']:.1%}")
        elif name in ("mig", "dci"):
            lines.append(f"\n{head}")
            for j, res in v.items():
                if name == "mig":
                    per = ", ".join(
                        f"{f}={_num(p, '.3f')}"
                        for f, p in zip(res["factor_names"], res["per_factor"], strict=False)
                    )
                    lines.append(f"task {j}: MIG {_num(res['mig'])} ({per})")
                else:
                    lines.append(
                        f"task {j}: disentanglement {_num(res['disentanglement'])}, completeness"
                        f" {_num(res['completeness'])}, informativeness"
                        f" {_num(res['informativeness'])}"
                    )
        elif name == "populations":
            lines.append(f"\n{head}")
            per = ", ".join(f"population {k}: {a:.1%}" for k, a in v["per_population"].items())
            lines.append(
                f"eqs. 7-8 accuracy {v['accuracy']:.1%} on {v['n']} inputs with"
                f" {v['importance_samples']} importance samples ({per})"
            )
            ari = v["ari"]
            lines.append("k-means ARI vs " + " | ".join(ari["columns"]))
            for row, vals in zip(ari["rows"], ari["values"], strict=True):
                lines.append(f"  {row:<10} " + " | ".join(_num(x, ".3f") for x in vals))
        elif name == "components":
            lines.append(f"\n{head}")
            pairs = zip(v["experts"], v["component_mse"], strict=True)
            comp = ", ".join(f"{k}: {_num(m)}" for k, m in pairs)
            lines.append(
                f"mean pairwise HSIC {_num(v['mean_pairwise_hsic'], '.4g')} (normalised "
                f"{_num(v['mean_pairwise_hsic_normalised'], '.3f')}) on {v['n']} images; MSE"
                f" mixture {_num(v['mixture_mse'])}, components alone: {comp}"
            )
        elif name == "forward":
            lines.append(f"\n{head}")
            for m in ("mse", "elbo"):
                init = ", ".join(_num(x, ".4g") for x in v["initial"][m])
                lines.append(f"untrained {m}: [{init}]")
                lines.append(f"forward_transfer_{m}: {v[f'forward_transfer_{m}']}")
    for name, why in result["skipped"].items():
        lines.append(f"\n{name}: skipped ({why})")
    return lines


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr)
