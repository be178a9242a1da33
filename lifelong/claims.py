"""The papers' claims, measured on the shipped runs: one row per claim, one column per data.

Each claim names the runs that measure it on the embedded data and on Fashion-MNIST and reads
its figure from what `python -m lifelong eval` stored in those runs (the manifest's metrics and
stored evaluation; InfoGAN's information term from its training log). `pretrain` writes the
table into pretrained/README.md and tests/test_claims.py checks that README.md quotes the same
rows, so the front page cannot drift from the runs.

    rows(root) -> [{"paper", "claim", "measure", "embedded", "fashion"}]   cells: {"text", "holds"}
    markdown(rows) -> the table (holds: yes / no / "-" where the figure has no verdict)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lifelong.explore.summary import run_report
from lifelong.runs import RunError, open_run

COLUMNS = ("embedded", "fashion")


@dataclass(frozen=True)
class Claim:
    """A paper's claim: `figure(runs) -> (text, holds)` over the runs named per column (in
    the order `figure` takes them); a column without runs is "n/a" with `why_not`."""

    paper: str
    claim: str
    measure: str
    runs: dict[str, tuple[str, ...]]
    figure: Callable[[list], tuple[str, bool | None]]
    why_not: str = ""


def _eval(run, name: str):
    return run.manifest.get("eval", {}).get("metrics", {}).get(name, {}).get("value")


def _mse(run) -> list[list[float]]:
    mse = run.metric("mse")
    if not mse:
        raise ValueError(f"{run.name} has no MSE matrix")
    return mse


def _kept(runs):
    mse = _mse(runs[0])
    learnt, end = mse[0][0], mse[-1][0]
    return f"{learnt:.4f} → {end:.4f} ({end / learnt - 1:+.0%})", end <= 1.25 * learnt


def _forgets(runs):
    mse = _mse(runs[0])
    learnt, end = mse[0][0], mse[-1][0]
    return f"{learnt:.4f} → {end:.4f} ({end / learnt:.1f}×)", end > 1.5 * learnt


def _routing(runs):
    acc = run_report(runs[0])["summary"].get("routing_accuracy_final") or []
    acc = [a for a in acc if a is not None]
    if not acc:
        raise ValueError(f"{runs[0].name} has no routing accuracy")
    mean = sum(acc) / len(acc)
    return " / ".join(f"{100 * a:.0f}" for a in acc) + f" % (mean {100 * mean:.0f} %)", mean >= 0.9


def _mean_final(run) -> float:
    last = _mse(run)[-1]
    return sum(last) / len(last)


def _ewc_between(runs):
    ewc, vae, lmvae = (_mean_final(r) for r in runs)
    text = f"EWC {ewc:.4f}; fine-tuned VAE {vae:.4f}; L-MVAE {lmvae:.4f}"
    return text, lmvae < ewc < vae


def _frechet_last(run) -> float:
    v = _eval(run, "frechet")
    if not v:
        raise ValueError(f"{run.name} has no stored Fréchet distance")
    return v["seen"][-1]


def _lgm_frechet(runs):
    lgm, vae = (_frechet_last(r) for r in runs)
    return f"LGM {lgm:.1f} against the fine-tuned VAE's {vae:.1f}", lgm < vae


def _task_shares(runs):
    v = _eval(runs[0], "task_shares")
    if not v:
        raise ValueError(f"{runs[0].name} has no stored task shares")
    last = v["per_task"][-1]
    mean = sum(last) / len(last)
    chance = 1 / len(last)
    text = " / ".join(f"{100 * s:.0f}" for s in last) + f" % (chance {100 * chance:.0f} %)"
    return text, mean >= 0.75


def _components(run) -> dict:
    v = _eval(run, "components")
    if not v:
        raise ValueError(f"{run.name} has no stored components metric")
    return v


def _hsic(runs):
    b10, b0 = (_components(r)["mean_pairwise_hsic"] for r in runs)
    n10, n0 = (_components(r)["mean_pairwise_hsic_normalised"] for r in runs)
    text = f"{b10:.4f} against {b0:.4f} ({b0 / b10:.1f}×; normalised {n10:.2f} / {n0:.2f})"
    return text, b10 < b0


def _mixture(runs):
    v = _components(runs[0])
    best = min(v["component_mse"])
    return f"{v['mixture_mse']:.4f} against {best:.4f}", v["mixture_mse"] < best


def _infogan_d(runs):
    run = runs[0]
    epochs = [r for r in run.log() if r.get("kind") == "epoch" and "mi_d" in r]
    if not epochs:
        raise ValueError(f"{run.name} has no information term in its log")
    k = run.config().discrete_dim
    mi, acc = epochs[-1]["mi_d"], epochs[-1].get("s_accuracy")
    text = f"{mi:.2f} of log {k} = {math.log(k):.2f} nats" + (
        f", S reads d {100 * acc:.0f} %" if acc is not None else ""
    )
    return text, mi >= 0.9 * math.log(k)


def _populations(runs):
    v = _eval(runs[0], "populations")
    if not v:
        raise ValueError(f"{runs[0].name} has no stored populations metric")
    n = len(v["per_population"])
    return f"{100 * v['accuracy']:.1f} % ({n}-way, chance {100 / n:.0f} %)", v["accuracy"] >= 0.75


def _table1(runs):
    cp, vae = runs
    v = _eval(cp, "populations")
    ari = _eval(vae, "ari")
    if not v or not ari:
        raise ValueError("needs the stored populations and ari metrics")
    rows = dict(zip(v["ari"]["rows"], v["ari"]["values"], strict=True))
    within = v["ari"]["columns"].index("class within population")
    shared, private = rows["shared z"][within], rows["private t"][within]
    plain = [a for a in ari[-1] if a is not None]
    plain = sum(plain) / len(plain)
    text = f"private {private:.3f} > VAE {plain:.3f} > shared {shared:.3f}"
    return text, private > plain > shared


E3 = "digits-glyphs-shapes"
CLAIMS = [
    Claim(
        "000 (L-MVAE)",
        "frozen experts keep the first task",
        "task-0 MSE when learnt → after the last task (holds: ≤ +25 %)",
        {"embedded": (f"lmvae-{E3}",), "fashion": ("lmvae-fashion5",)},
        _kept,
    ),
    Claim(
        "000 (L-MVAE)",
        "eq. 7 routes each task's test images to its expert",
        "share routed to the task's expert after the last task (holds: mean ≥ 90 %)",
        {"embedded": (f"lmvae-{E3}",), "fashion": ("lmvae-fashion5",)},
        _routing,
    ),
    Claim(
        "000, 001 (baseline)",
        "a fine-tuned VAE forgets",
        "task-0 MSE when learnt → after the last task (holds: > 1.5×)",
        {"embedded": (f"vae-{E3}",), "fashion": ("vae-fashion5",)},
        _forgets,
    ),
    Claim(
        "001 Sec. 5 (EWC)",
        "EWC forgets less than fine-tuning, more than the mixture",
        "mean MSE over tasks after the last task (holds: L-MVAE < EWC < VAE)",
        {
            "embedded": (f"ewc-{E3}", f"vae-{E3}", f"lmvae-{E3}"),
            "fashion": ("ewc-fashion5", "vae-fashion5", "lmvae-fashion5"),
        },
        _ewc_between,
    ),
    Claim(
        "001 Fig. 12a (LGM)",
        "replay keeps samples of every task: Fréchet below the fine-tuned VAE's",
        "Fréchet (classifier features) over all tasks after the last one, lower is better",
        {"embedded": (f"lgm-{E3}", f"vae-{E3}"), "fashion": ("lgm-fashion5", "vae-fashion5")},
        _lgm_frechet,
    ),
    Claim(
        "001 Figs. 5b, 12b (LGM)",
        "fixing z_d generates that task",
        "share of samples at each task's code a probe calls that task (holds: mean ≥ 75 %)",
        {"embedded": (f"lgm-{E3}",), "fashion": ("lgm-fashion5",)},
        _task_shares,
    ),
    Claim(
        "002 Fig. 12 (MVAE)",
        "dHSIC (beta = 10) makes the components' codes more independent",
        "mean pairwise HSIC, beta = 10 against beta = 0 (lower: more independent)",
        {
            "embedded": (f"mvae-beta10-{E3}", f"mvae-beta0-{E3}"),
            "fashion": ("mvae-beta10-fashion", "mvae-beta0-fashion"),
        },
        _hsic,
    ),
    Claim(
        "002 (MVAE)",
        "the mixture reconstructs better than any one component",
        "MSE, the mixture against its best component alone (beta = 10)",
        {"embedded": (f"mvae-beta10-{E3}",), "fashion": ("mvae-beta10-fashion",)},
        _mixture,
    ),
    Claim(
        "003 (InfoGAN)",
        "S recovers the discrete code d",
        "L_MI's discrete term at the end of training (holds: ≥ 90 % of log k)",
        {"embedded": ("infogan-digits-split",), "fashion": ("infogan-fashion5",)},
        _infogan_d,
    ),
    Claim(
        "004 Table 2 (CPVAE)",
        "eqs. 7-8 tell the populations apart",
        "population accuracy on test images (holds: ≥ 75 %; Table 2: MNIST 99.5 %, "
        "MNIST-GRASS 77.5 %, 10-way)",
        {"embedded": ("cpvae-textured10",), "fashion": ("cpvae-fashion10",)},
        _populations,
    ),
    Claim(
        "004 Table 1 (CPVAE)",
        "private codes cluster a population's classes better than a VAE's, shared ones not",
        "k-means ARI of the classes within a population",
        {"embedded": ("cpvae-grassy", "vae-grassy")},
        _table1,
        why_not="needs a background shared by the populations; Fashion-MNIST has none",
    ),
]


def _cell(claim: Claim, column: str, root: Path) -> dict:
    names = claim.runs.get(column)
    if not names:
        return {"text": f"n/a ({claim.why_not})" if claim.why_not else "n/a", "holds": None}
    try:
        runs = [open_run(root / n) for n in names]
    except RunError:
        return {"text": "not built here", "holds": None}
    try:
        text, holds = claim.figure(runs)
    except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        return {"text": f"not measured ({exc})", "holds": None}
    return {"text": f"{text} (`{names[0]}`)", "holds": bool(holds)}


def rows(root: str | Path) -> list[dict]:
    """Every claim's cells from the runs under `root` (pretrained/)."""
    root = Path(root)
    return [
        {
            "paper": c.paper,
            "claim": c.claim,
            "measure": c.measure,
            **{col: _cell(c, col, root) for col in COLUMNS},
        }
        for c in CLAIMS
    ]


def _verdict(cell: dict) -> str:
    return {True: "yes", False: "**no**", None: "-"}[cell["holds"]]


def markdown(table: list[dict]) -> str:
    """The claims table in Markdown, one row per claim."""
    lines = [
        "| paper | claim | measured as | embedded | holds | Fashion-MNIST | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        e, f = r["embedded"], r["fashion"]
        lines.append(
            f"| {r['paper']} | {r['claim']} | {r['measure']} | {e['text']} | {_verdict(e)} | "
            f"{f['text']} | {_verdict(f)} |"
        )
    return "\n".join(lines)


def runs_table(root: str | Path, names: list[str]) -> str:
    """A Markdown table of lifelong runs over one sequence: MSE per task after the last task,
    task 0's MSE when learnt and at the end, and the Fréchet distance over the seen tasks
    after each task (what docs/claims.md shows per run)."""
    lines = [
        "| run | MSE per task after the last task | task-0 MSE: learnt → end | "
        "Fréchet over seen tasks, after each task |",
        "|---|---|---|---|",
    ]
    for name in names:
        try:
            run = open_run(Path(root) / name)
        except RunError:
            continue
        mse = run.metric("mse")
        last = " / ".join(f"{v:.4f}" for v in mse[-1]) if mse else "-"
        kept = "(one snapshot)"
        if mse and len(mse) > 1:
            kept = f"{mse[0][0]:.4f} → {mse[-1][0]:.4f} ({mse[-1][0] / mse[0][0]:.2f}×)"
        fd = _eval(run, "frechet")
        seen = " / ".join(f"{v:.1f}" for v in fd["seen"]) if fd else "-"
        lines.append(f"| `{name}` | {last} | {kept} | {seen} |")
    return "\n".join(lines)
