"""Data roots: the folders the app may read datasets from.

A person using the app types task specs into a server's page; `mnist:path=/home/someone` would
make the server read (and show) whatever lies there. So the app reads datasets only inside
configured roots: the project's `data/` folder, Debian's dataset folder `/usr/share/datasets`
(where `apt-get install dataset-fashion-mnist` puts Fashion-MNIST, the `fashion` default), and
the folders listed in the environment variable LIFELONG_DATA_ROOTS (os.pathsep-separated, read
on every call, so a test or a launcher can change it). The command line does not call this:
a person on a terminal may train on any folder they can read.

    data_roots() -> [Path, ...]                       resolved, without duplicates
    check_roots("mnist:path=data/mnist,digits")       None, or DataError (one line)
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import DataError
from .registry import parse_spec, parse_tasks

ENV = "LIFELONG_DATA_ROOTS"
PROJECT = Path(__file__).resolve().parents[2]  # the repository: data/ and the trainer's cwd
DEFAULT_ROOTS = (PROJECT / "data", Path("/usr/share/datasets"))


def _resolve(path: str | Path, base: Path | None = None) -> Path:
    """Absolute path with `~` expanded and every symlink resolved (the path need not exist);
    relative paths are taken from `base` (default: the current directory)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    return Path(os.path.realpath(p))


def data_roots() -> list[Path]:
    """The configured data roots, resolved: the defaults, then LIFELONG_DATA_ROOTS's entries
    (empty entries ignored; a root need not exist)."""
    extra = os.environ.get(ENV, "").split(os.pathsep)
    out: list[Path] = []
    for entry in [*DEFAULT_ROOTS, *(e.strip() for e in extra if e.strip())]:
        try:
            root = _resolve(entry)
        except (OSError, ValueError):  # a NUL byte or an unreadable entry: not a root
            continue
        if root not in out:
            out.append(root)
    return out


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def check_roots(tasks: str | list[str] | tuple[str, ...]) -> None:
    """Raise DataError unless every dataset path the tasks read lies inside a data root.

    `tasks` is a task sequence ("a,b,c") or a list of specs; each is parsed (a malformed spec
    raises its usual DataError). The path checked is the `path=` option, or the dataset's
    default folder (`fashion`); symlinks are resolved, so a link inside a root that leads out
    is refused. A relative path must be inside a root both from the current directory (where
    this process would read it) and from the project folder (where the Train page's jobs run).
    The message names the path as given, never what it resolves to."""
    specs = [parse_spec(t) for t in tasks] if isinstance(tasks, (list, tuple)) else None
    if specs is None:
        specs = [parse_spec(t) for t in parse_tasks(tasks)]
    roots = None
    for s in specs:
        path = s.options.get("path") or (s.info.default_path if s.info.path != "never" else None)
        if path is None:
            continue
        roots = roots if roots is not None else data_roots()
        try:
            bases = [None] if Path(os.path.expanduser(path)).is_absolute() else [None, PROJECT]
            ok = all(_inside(_resolve(path, b), roots) for b in bases)
        except (OSError, ValueError):  # a NUL byte, an unreadable link: not a usable path
            ok = False
        if not ok:
            raise DataError(
                f"'{s.info.name}': path {path!r} is outside the data roots "
                f"({', '.join(str(r) for r in roots)}); the app reads datasets only there "
                f"(more roots: set {ENV}, separated by '{os.pathsep}')"
            )
