"""What `python -m lifelong eval` does with the metrics runeval.evaluate_run computed: stores
them in the run's manifest (with what a run made by an older version lacks: its evaluation
images, Compare experts' table) and prints them.

    check_writable(run)          RunError while the run is still training
    store(run, result)           merge into manifest["eval"] (atomic, re-read first)
    format_eval(run, result)     printable lines
"""

from __future__ import annotations

import sys

from lifelong import metrics, runs

FORMAT = "lifelong-eval/1"
METRICS = metrics.EVAL_METRICS


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
