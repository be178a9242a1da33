"""The Expert timeline page's data, read from a run's events and log (no recomputation).

Tasks run along x, experts along y: the Dirichlet parameters a (paper 000 eq. 6) after each
assignment, which expert was frozen as whose depository (eqs. 3-5), experts added or reused by
L-MVAE-Dyn with the eq. 24 novelty score that decided it, and where each task's test data is
routed after each snapshot. Per-epoch figures a family logs (MVAE's dropout rate and active
components, paper 002 Figs. 15-16) come from log.jsonl.
"""

from __future__ import annotations

BOOKKEEPING = {"kind", "time", "task", "epoch", "step", "seconds", "n_tasks", "total_steps"}


def expert_states(run) -> dict:
    """{"tasks": [t], "experts": [k], "alpha": [T][K] Dirichlet a during task t (None where not
    logged), "state": [T][K] short text per cell ("free", "frozen: task j", "added", ...)}."""
    n_tasks = len(run.tasks)
    events = run.events
    n_exp = 0
    for e in events:
        n_exp = max(n_exp, len(e.get("alpha", [])), e.get("expert", -1) + 1)
    alpha = [[None] * n_exp for _ in range(n_tasks)]
    state = [[""] * n_exp for _ in range(n_tasks)]
    holds: dict[int, int] = {}
    for t in range(n_tasks):
        mine = [e for e in events if e.get("task") == t]
        for e in mine:
            if e["type"] == "mixing":
                alpha[t][: len(e["alpha"])] = e["alpha"]
            elif e["type"] == "expert_frozen":
                holds[e["expert"]] = e["holds_task"]
        for k in range(n_exp):
            if k in holds:
                state[t][k] = f"frozen: task {holds[k]}"
            elif alpha[t][k] is not None:
                state[t][k] = "free"
        for e in mine:
            if e["type"] in ("expert_added", "expert_reused"):
                word = e["type"].split("_")[1]
                score = f" (S={min(e['distances']):.3g})" if e.get("distances") else ""
                state[t][e["expert"]] = f"{word}{score}"
            elif e["type"] == "task_holder" and not state[t][e["expert"]].startswith("frozen"):
                state[t][e["expert"]] += " · learns this task"
    return {"tasks": run.tasks, "experts": list(range(n_exp)), "alpha": alpha, "state": state}


def routing(run, after_task: int) -> list[list[float]] | None:
    """[T][K] fraction of each task's test images routed to each expert after `after_task`."""
    for e in run.events:
        if e["type"] == "routing" and e.get("after_task") == after_task:
            return e["fractions"]
    return None


def epoch_series(run) -> dict:
    """{"x": [global epoch index], "task": [task per point], "boundaries": [x where a task
    starts], "series": name -> [value]} from the run's per-epoch log records."""
    records = [r for r in run.log() if r.get("kind") == "epoch"]
    names: list[str] = []
    for r in records:
        names += [k for k, v in r.items() if k not in BOOKKEEPING and k not in names and _num(v)]
    series = {n: [r.get(n) for r in records] for n in names}
    tasks = [r.get("task", 0) for r in records]
    boundaries = [i for i in range(1, len(tasks)) if tasks[i] != tasks[i - 1]]
    return {
        "x": list(range(len(records))),
        "task": tasks,
        "boundaries": boundaries,
        "series": series,
    }


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
