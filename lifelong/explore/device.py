"""Where the app's batch work runs (issue 18, part 4): one chooser for every page.

Batch work (encoding every point of a map, grids, metrics, the Compare pages) runs on the
*batch device*: `auto` picks CUDA when `torch.cuda.is_available()`, else the CPU. The
environment variable LIFELONG_APP_DEVICE (auto | cpu | cuda) sets the default, a sidebar
setting (shown only where CUDA is available) overrides it for a session. A slider's
single-image decode stays on the CPU whatever the choice (the traversal's ONNX export and
its server fallback): one image is per-op overhead, not arithmetic, and a CUDA launch plus
the copy back costs more than the CPU's decode (bench/bench_views.py prints both).

On a CPU-only machine every choice resolves to "cpu": nothing changes there.
"""

from __future__ import annotations

import torch

ENV = "LIFELONG_APP_DEVICE"
CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device setting that is not one of CHOICES; its message is one line for the page."""


def parse(text: str | None) -> str:
    """LIFELONG_APP_DEVICE's value -> one of CHOICES ("auto" when unset or empty; case and
    surrounding spaces ignored). DeviceError names the value and the valid ones."""
    value = (text or "").strip().lower()
    if not value:
        return "auto"
    if value not in CHOICES:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise DeviceError(f"{ENV}={shown!r} is not one of {', '.join(CHOICES)}")
    return value


def resolve(choice: str) -> tuple[str, str | None]:
    """A choice (one of CHOICES) -> (device, note): "cuda" or "cpu", and a one-line note
    when the choice cannot be honoured (cuda asked for, none available: the CPU)."""
    if choice not in CHOICES:
        raise DeviceError(f"batch device {choice!r} is not one of {', '.join(CHOICES)}")
    has_cuda = torch.cuda.is_available()
    if choice == "auto":
        return ("cuda" if has_cuda else "cpu"), None
    if choice == "cuda" and not has_cuda:
        return "cpu", "cuda was asked for but no CUDA device is available here: using the CPU"
    return choice, None


def batch_device(env: str | None, setting: str | None = None) -> tuple[str, str | None]:
    """The batch device from the environment's value `env` (LIFELONG_APP_DEVICE) and a
    session's `setting` (the sidebar's, None if not made), the setting first: (device,
    note). An invalid `env` is not an error here: its note says so and `auto` applies."""
    notes = []
    try:
        default = parse(env)
    except DeviceError as exc:
        default = "auto"
        notes.append(f"{exc}: using auto")
    device, note = resolve(setting if setting in CHOICES else default)
    if note:
        notes.append(note)
    return device, ("; ".join(notes) + ".") if notes else None
