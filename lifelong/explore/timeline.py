"""The Expert timeline page's data, read from a run's events and log (no recomputation).

Tasks run along x, experts along y: the Dirichlet parameters a (paper 000 eq. 6) after each
assignment, which expert was frozen as whose depository (eqs. 3-5), experts added or reused by
L-MVAE-Dyn with the eq. 24 novelty score that decided it, and where each task's test data is
routed after each snapshot. Per-epoch figures a family logs (MVAE's dropout rate and active
components, paper 002 Figs. 15-16) come from log.jsonl.
"""

from __future__ import annotations

from lifelong import events

BOOKKEEPING = {"kind", "time", "task", "epoch", "step", "seconds", "n_tasks", "total_steps"}


def expert_states(run) -> dict:
    """{"tasks": [t], "experts": [k], "alpha": [T][K] Dirichlet a during task t (None where not
    logged), "state": [T][K] short text per cell ("free", "frozen: task j", "pruned", ...)}.

    Every family's events are read the same way (lifelong/events.py): `Mixing` gives a,
    and each event's `marks()` what it writes in an expert's cell, lasting (frozen, pruned)
    or for its task only (added, reused), or as a note after the cell's state."""
    n_tasks = len(run.tasks)
    evs = run.events
    n_exp = 0
    for e in evs:
        if isinstance(e, events.Mixing):
            n_exp = max(n_exp, len(e.alpha))
        n_exp = max(n_exp, *(m.expert + 1 for m in e.marks()), 0)
    alpha = [[None] * n_exp for _ in range(n_tasks)]
    state = [[""] * n_exp for _ in range(n_tasks)]
    lasting: dict[int, str] = {}
    pending: dict[int, str] = {}  # lasting states that start with the next task
    held: dict[int, list[int]] = {}  # expert -> the finished tasks it holds (TaskHolder)
    for t in range(n_tasks):
        mine = [e for e in evs if e.task == t]
        lasting |= pending
        pending = {}
        frozen: set[int] = set()  # experts the task's Mixing lists as not training
        for e in mine:
            if isinstance(e, events.Mixing):
                alpha[t][: len(e.alpha)] = e.alpha
                frozen = set(e.frozen or [])
            for m in e.marks():
                if m.lasting:
                    (pending if m.from_next else lasting)[m.expert] = m.text
        for k in range(n_exp):
            default = "free" if alpha[t][k] is not None else ""
            if k in frozen:  # L-MVAE-Dyn freezes without eq. 3's ExpertFrozen events
                tasks = ", ".join(str(j) for j in held.get(k, []))
                default = f"frozen: task {tasks}" if tasks else "frozen"
            state[t][k] = lasting.get(k) or default
        for e in mine:
            for m in e.marks():
                if m.lasting or not 0 <= m.expert < n_exp:
                    continue
                if not m.note:
                    state[t][m.expert] = m.text
                elif m.expert not in lasting:
                    state[t][m.expert] += f" · {m.text}"
        for e in mine:
            if isinstance(e, events.TaskHolder):
                held.setdefault(e.expert, []).append(e.task)
    return {"tasks": run.tasks, "experts": list(range(n_exp)), "alpha": alpha, "state": state}


def routing(run, after_task: int) -> list[list[float]] | None:
    """[T][K] fraction of each task's test images routed to each expert after `after_task`."""
    for e in run.events:
        if isinstance(e, events.Routing) and e.after_task == after_task:
            return e.fractions
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
