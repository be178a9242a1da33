"""Training callbacks: how training reports progress (tqdm on stderr, JSONL log, the app)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class Callback:
    """Hooks the trainer calls; every `info` is a plain JSON-able dict."""

    def on_start(self, info: dict) -> None: ...
    def on_step(self, info: dict) -> None: ...
    def on_epoch(self, info: dict) -> None: ...
    def on_task_end(self, info: dict) -> None: ...
    def on_end(self, info: dict) -> None: ...


def log_line(record: dict) -> str:
    """One log.jsonl line: floats to 6 significant digits (the losses are float32 means, whose
    7th digit is noise) and the wall-clock time to the millisecond, which keeps a long run's log
    about a third smaller than Python's shortest repr of each float."""

    def compact(v):
        if isinstance(v, float):
            return float(f"{v:.6g}") if v == v and abs(v) != float("inf") else v
        if isinstance(v, list):
            return [compact(x) for x in v]
        if isinstance(v, dict):
            return {k: compact(x) for k, x in v.items()}
        return v

    out = {k: (round(v, 3) if k == "time" else compact(v)) for k, v in record.items()}
    return json.dumps(out) + "\n"


class JSONLLog(Callback):
    """Appends one JSON object per logged step and per epoch to RUN/log.jsonl; the app's Train
    page polls this file for live loss curves."""

    def __init__(self, path: Path, every: int = 10):
        self.path, self.every = Path(path), every

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(log_line(record))

    def on_step(self, info: dict) -> None:
        if info["step"] % self.every == 0:
            self._write({"kind": "step", "time": time.time(), **info})

    def on_epoch(self, info: dict) -> None:
        self._write({"kind": "epoch", "time": time.time(), **info})

    def on_task_end(self, info: dict) -> None:
        self._write({"kind": "task", "time": time.time(), **info})


class Progress(Callback):
    """A tqdm bar per task on stderr, with the running loss."""

    def __init__(self):
        self.bar = None

    def on_step(self, info: dict) -> None:
        from tqdm import tqdm

        if self.bar is None or info.get("_new_task"):
            if self.bar is not None:
                self.bar.close()
            desc = f"task {info['task'] + 1}/{info['n_tasks']}"
            self.bar = tqdm(total=info["total_steps"], desc=desc, file=sys.stderr, leave=False)
        self.bar.update(1)
        if info["step"] % 10 == 0:
            self.bar.set_postfix(loss=f"{info['total']:.2f}")

    def on_task_end(self, info: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_end = on_task_end


def prune_log(path: Path, from_task: int, from_epoch: int = 0) -> None:
    """Drop records of tasks > from_task, and of task from_task from epoch from_epoch on (an
    interrupted task being redone on --resume, or continued from a checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by the interruption
        task = rec.get("task", 0)
        if task < from_task or (
            task == from_task and rec.get("kind") != "task" and rec.get("epoch", 0) < from_epoch
        ):
            keep.append(line)
    from lifelong.runs import atomic_write

    atomic_write(path, "".join(line + "\n" for line in keep).encode())
