"""The trainer's one error type (kept apart so that every training module can raise it), and
the one line a failed write of the run folder becomes."""

from __future__ import annotations

import errno
from pathlib import Path


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, mismatched resume, ...); one-line message."""


def write_error(out: Path, exc: OSError, resumable: bool) -> TrainingError:
    """`cannot write RUN: <reason> (...)` for an OSError met while writing the run (a full
    disk, a quota, a read-only file system, a permission): what the user must do, and whether
    --resume will go on from what is there (it will whenever the run has its manifest)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if not resumable:
        return TrainingError(f"cannot write {out}: {reason}")
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free space" if full else "fix that"
    return TrainingError(f"cannot write {out}: {reason} ({fix} and resume with --resume)")
