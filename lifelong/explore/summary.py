"""What a run says about itself: the run card, forgetting matrices and a summary of them."""

from __future__ import annotations

from lifelong import metrics, runs

LOWER_IS_BETTER = {n for n, d in metrics.DEFINITIONS.items() if not d.higher_is_better}


def matrix(run, name: str) -> list[list[float | None]]:
    """Forgetting matrix `name` [after task k][task j]: from the training metrics, or from
    the evaluation `python -m lifelong eval --write` stored in the manifest (iwelbo, ssim,
    frechet per task, ari, transfer); [] if the run has neither."""
    m = run.metric(name)
    if m:
        return m
    value = runs.stored_eval(run).get(name)
    if isinstance(value, dict):
        value = value.get("per_task")
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        return value
    return []


def stored_eval_value(run, name: str):
    """The value `eval --write` stored for metric `name` (None if the run has none)."""
    return runs.stored_eval(run).get(name)


def matrix_names(run) -> list[str]:
    """Every forgetting matrix the run holds, training metrics first."""
    order = ["mse", "elbo", "psnr", "routing_accuracy", "class_accuracy", *metrics.EVAL_MATRIX]
    names = [n for n in order if matrix(run, n)]
    return names + sorted(n for n in run.manifest.get("metrics", {}) if n not in names)


def eval_scalars(run) -> list[dict]:
    """The stored evaluation's single figures (MIG, DCI, Frechet over seen tasks, forward
    transfer), one row each, for a table."""
    rows = []
    for name, value in runs.stored_eval(run).items():
        if isinstance(value, dict):
            for key, v in value.items():
                if key != "per_task":
                    rows.append(
                        {
                            "metric": f"{name} {key}",
                            "value": str(v),
                            "what": metrics.EVAL_METRICS.get(name, ""),
                        }
                    )
        elif not isinstance(value, list):
            rows.append(
                {"metric": name, "value": str(value), "what": metrics.EVAL_METRICS.get(name, "")}
            )
    return rows


def run_report(run) -> dict:
    """Matrices [after task k][task j] from the manifest, plus forgetting and routing summaries."""
    names = [
        n for n in ("mse", "elbo", "psnr", "routing_accuracy", "class_accuracy") if run.metric(n)
    ]
    matrices = {n: run.metric(n) for n in names}
    summary: dict[str, object] = {}
    for n in ("mse", "elbo", "class_accuracy"):
        if matrices.get(n):
            better_high = n not in LOWER_IS_BETTER
            summary[f"forgetting_{n}"] = metrics.forgetting(matrices[n], better_high)
            summary[f"backward_transfer_{n}"] = metrics.backward_transfer(matrices[n], better_high)
    if "routing_accuracy" in matrices and matrices["routing_accuracy"]:
        summary["routing_accuracy_final"] = matrices["routing_accuracy"][-1]
    if matrices.get("class_accuracy"):
        summary["class_accuracy_final"] = matrices["class_accuracy"][-1]
    return {
        "run": run.name,
        "family": run.family,
        "tasks": run.tasks,
        "matrices": matrices,
        "summary": summary,
    }


def run_card(run) -> dict:
    """The facts the Overview page shows about a run."""
    cfg = run.manifest["config"]
    last = run.manifest["snapshots"][-1] if run.manifest["snapshots"] else {}
    return {
        "family": run.family,
        "tasks": run.tasks,
        "snapshots": len(run.snapshots),
        "experts": (last.get("arch") or {}).get("n_experts"),
        "latent_dim": cfg.get("latent_dim"),
        "status": run.manifest.get("status", "complete"),
        "created": run.manifest.get("created"),
        "epochs": run.manifest.get("train", {}).get("epochs"),
        "device": run.manifest.get("device"),
        "size_mb": round(sum(s.get("bytes", 0) for s in run.manifest["snapshots"]) / 2**20, 2),
    }


def event_rows(run, upto: int | None = None) -> list[dict]:
    """The task-boundary events in reading order, one short line each (the event's own
    `describe()`, lifelong/events.py), up to snapshot `upto`."""
    return [
        {"task": e.task, "event": e.kind, "details": e.describe()}
        for e in run.events
        if upto is None or e.task <= upto
    ]


def weights_key(run, snap: int, tests: list) -> tuple:
    """What a page's cached results (st.cache_data) depend on besides its widgets: the run,
    the checksums of the snapshot files 0..snap it merges, and where the test images come
    from (the dataset or the run's stored sample)."""
    files = tuple(s["sha256"] for s in run.manifest["snapshots"] if s["after_task"] <= snap)
    return str(run.path), files, tuple((type(d).__name__, len(d)) for d in tests)
