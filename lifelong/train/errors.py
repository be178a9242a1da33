"""The trainer's one error type (kept apart so that every training module can raise it)."""


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, mismatched resume, ...); one-line message."""
