"""The Compare runs page's computations: several runs over the same task sequence, ranked by
the continual-learning metrics researchers report, their curves, and the same inputs and seeds
through every run.

Definitions (Lopez-Paz & Ranzato 2017, as Avalanche and Mammoth compute them), applied to every
stored generative metric R[k][j] (row: after task k, column: task j; lifelong.metrics says which
way each metric is better):

- ACC, the final average: mean over tasks of R[last][j];
- forgetting: mean over earlier tasks of how much worse R[last][j] is than right after task j
  was learnt (positive = forgotten);
- BWT, backward transfer: minus that mean over the tasks before the last (positive = later
  tasks helped, Lopez-Paz & Ranzato's sign);
- FWT, forward transfer: mean over tasks j > 0 of R[before j][j] - b_j, b_j the untrained
  model's value (stored by `eval --metrics forward`; sign: positive = earlier tasks helped).

For a lower-is-better metric (MSE, Fréchet) the signs are flipped so that positive means the
same thing in every column.
"""

from __future__ import annotations

import math

import torch

from lifelong import metrics, models
from lifelong.explore import summary

# the leaderboard's metric columns: stored training metrics and the evaluation's Fréchet
BOARD_METRICS = ("mse", "elbo", "frechet", "fitting", "iwelbo")


def groups(candidates: dict) -> dict[tuple, list[str]]:
    """Run labels grouped by task sequence (tuple of specs), biggest group first."""
    out: dict[tuple, list[str]] = {}
    for label, run in candidates.items():
        if run.snapshots:
            out.setdefault(tuple(run.tasks), []).append(label)
    return dict(sorted(out.items(), key=lambda kv: -len(kv[1])))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def key_settings(run) -> str:
    """The options a run was trained with beyond its family's defaults (--set), one line."""
    over = dict(run.manifest.get("train", {}).get("overrides", {}))
    epochs = run.manifest.get("train", {}).get("epochs")
    parts = [f"{k}={v}" for k, v in sorted(over.items())]
    return ", ".join(([f"epochs={epochs}"] if epochs else []) + parts)


def parameters(run) -> int:
    """Numbers held by the run's last model (sized on the meta device: nothing is loaded)."""
    entry = run.manifest["snapshots"][-1]
    shapes = models.state_shapes(run.family, run.config(), entry.get("arch"))
    return sum(math.prod(s) for s in shapes.values())


def size_mb(run) -> float:
    """Bytes of every file the run's manifest lists (snapshots, stored extras, evaluation
    images), in MB."""
    entries = list(run.manifest["snapshots"])
    entries += [e for kind in run.manifest.get("extras", {}).values() for e in kind.values()]
    entries += list(run.manifest.get("evaldata", {}).values())
    return sum(e.get("bytes", 0) for e in entries) / 2**20


def training_seconds(run) -> float | None:
    """Seconds of training from the log's per-epoch records (None without them)."""
    secs = [r.get("seconds") for r in run.log() if r.get("kind") == "epoch"]
    secs = [s for s in secs if isinstance(s, int | float)]
    return sum(secs) if secs else None


def scores(run, name: str) -> dict[str, float | None]:
    """ACC, forgetting, BWT and FWT of metric `name` of one run (None where undefined)."""
    m = summary.matrix(run, name)
    higher = metrics.definition(name).higher_is_better
    out = {"acc": None, "forgetting": None, "bwt": None, "fwt": None}
    if not m or not m[-1]:
        return out
    after = run.snapshots if len(run.snapshots) == len(m) else None
    out["acc"] = _mean(m[-1])
    if len(m) > 1:  # a run trained on every task at once (joint) has no sequence to forget
        out["forgetting"] = _mean(
            metrics.forgetting(m, higher, after)[: after[-2] + 1 if after else len(m) - 1]
        )
        out["bwt"] = metrics.backward_transfer(m, higher, after)
    forward = summary.stored_eval_value(run, "forward")
    initial = (forward or {}).get("initial", {}).get(name) if isinstance(forward, dict) else None
    out["fwt"] = metrics.forward_transfer(m, initial, higher, after) if initial else None
    return out


def leaderboard(chosen: dict) -> list[dict]:
    """One row per run (label -> Run): family, settings, each metric's ACC / forgetting / BWT /
    FWT, the Fréchet distance over seen tasks after the last task, parameters, size, training
    time and device. Column names are stable (the CSV and LaTeX exports use them)."""
    rows = []
    for label, run in chosen.items():
        row = {"run": label, "family": run.family, "settings": key_settings(run)}
        for name in BOARD_METRICS:
            s = scores(run, name)
            if name in ("frechet", "fitting"):  # the figure papers quote: every seen task
                fr = summary.stored_eval_value(run, name)
                seen = fr.get("seen") if isinstance(fr, dict) else None
                s["acc"] = seen[-1] if isinstance(seen, list) and seen else s["acc"]
            for key, value in s.items():
                row[f"{name} {key}"] = value
        try:
            row["parameters"] = parameters(run)
        except ValueError:  # a family that cannot be sized here (e.g. its plugin is broken)
            row["parameters"] = None
        row["size MB"] = round(size_mb(run), 2)
        row["train s"] = training_seconds(run)
        row["device"] = run.manifest.get("device")
        rows.append(row)
    return [r for r in rows if any(v is not None for k, v in r.items() if " " in k)]


def best(rows: list[dict]) -> dict[str, str]:
    """Column -> the run label holding its best value (metric columns only): the lowest for
    a lower-is-better metric's ACC, the highest otherwise; for forgetting the lowest."""
    out = {}
    for col in (
        c for c in (rows[0] if rows else {}) if " " in c and c.split()[0] in metrics.DEFINITIONS
    ):
        name, what = col.split(" ", 1)
        vals = [(r[col], r["run"]) for r in rows if r[col] is not None]
        if not vals:
            continue
        low = what == "forgetting" or (
            what == "acc" and not metrics.definition(name).higher_is_better
        )
        out[col] = (min(vals) if low else max(vals))[1]
    return out


def curves(chosen: dict, name: str, task: int | None = None) -> dict[str, list]:
    """Label -> [value after task k for each snapshot]: the mean over the tasks seen so far
    (task None) or task `task`'s value."""
    out = {}
    for label, run in chosen.items():
        m = summary.matrix(run, name)
        if not m:
            continue
        after = run.snapshots if len(run.snapshots) == len(m) else list(range(len(m)))
        if task is None:
            ys = [_mean(row[: a + 1]) for row, a in zip(m, after, strict=False)]
        else:
            ys = [row[task] if task < len(row) else None for row in m]
        out[label] = list(zip(after, ys, strict=False))
    return out


@torch.no_grad()
def side_by_side(models_: dict, x: torch.Tensor, n_samples: int, seed: int = 0) -> dict:
    """Label -> {"recon": [N, C, H, W], "samples": [n_samples, C, H, W]}: the same inputs x
    through every run's model (routed expert for mixtures) and samples drawn with the same
    seed, so the runs differ only by their weights."""
    out = {}
    for label, model in models_.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            can = model.capabilities.sampling
            samples = model.sample(n_samples).cpu() if can else x[:0].cpu()
        out[label] = {"recon": model.reconstruct(x.to(model.device)).cpu(), "samples": samples}
    return out


def _fmt(value) -> str:
    if value is None:
        return "--"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def latex(rows: list[dict], columns: list[str]) -> str:
    """The leaderboard as a LaTeX table (booktabs), the best value of each column in bold."""
    marks = best(rows)

    def esc(s: str) -> str:
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("&", r"\&"),
            ("%", r"\%"),
            ("_", r"\_"),
            ("#", r"\#"),
            ("$", r"\$"),
            ("{", r"\{"),
            ("}", r"\}"),
        ):
            s = s.replace(a, b)
        return s

    lines = [
        r"\begin{tabular}{" + "l" * 2 + "r" * (len(columns) - 2) + "}",
        r"\toprule",
        " & ".join(esc(c) for c in columns) + r" \\",
        r"\midrule",
    ]
    for r in rows:
        cells = []
        for c in columns:
            text = esc(_fmt(r.get(c)))
            cells.append(rf"\textbf{{{text}}}" if marks.get(c) == r["run"] else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def curves_png(lines: dict[str, list], title: str, ylabel: str) -> bytes:
    """The curves (label -> [(after task k, value)]) as a PNG drawn by matplotlib (the
    plotly chart's static twin, for papers and slides)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=150)
    ax = fig.subplots()
    for label, points in lines.items():
        pts = [(k, v) for k, v in points if v is not None]
        if pts:
            ax.plot([k for k, _ in pts], [v for _, v in pts], marker="o", label=label)
    ax.set_xlabel("after task k")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
