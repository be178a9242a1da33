"""Imports go one way (issue 17, "clean layers"): data and models at the bottom, runs and
metrics above them, train and explore above those, the command line and the app on top. A
plugin author reads this list to know which layer may use which."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Every module of lifelong/ (by its dotted name's first two parts) and of the app, by layer.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "data and models",
        {
            "lifelong.data",
            "lifelong.models",
            "lifelong.losses",
            "lifelong.hsic",
            "lifelong.events",
            "lifelong.eventbase",
            "lifelong.zipread",
        },
    ),
    (
        "runs and metrics",
        {
            "lifelong.runs",
            "lifelong.runcheck",
            "lifelong.evaldata",
            "lifelong.archive",
            "lifelong.metrics",
            "lifelong.likelihood",
            "lifelong.disentangle",
            "lifelong.evaluation",
            "lifelong.classifier",
            "lifelong.embedding",
        },
    ),
    ("train and explore", {"lifelong.train", "lifelong.explore"}),
    (
        "command line",
        {
            "lifelong.__main__",
            "lifelong.runeval",
            "lifelong.evalreport",
            "lifelong.zoo",
            "lifelong.claims",
            "lifelong.testing",
            "lifelong",
        },
    ),
    ("app", {"app", "ui", "pagelist", "views", "app_conformance"}),
]
# Neighbours in one layer that must not use each other either (each stands on the layers below).
SIBLINGS = [("lifelong.train", "lifelong.explore"), ("lifelong.data", "lifelong.models")]


def unit(name: str) -> str:
    """The layer unit of a dotted module name: lifelong.x.y -> lifelong.x; views.z -> views."""
    parts = name.split(".")
    if parts[0] == "lifelong":
        return ".".join(parts[:2])
    return parts[0]


def layer_of(u: str) -> int | None:
    for i, (_, units) in enumerate(LAYERS):
        if u in units:
            return i
    return None


def sources() -> list[tuple[str, Path]]:
    files = [*(ROOT / "lifelong").rglob("*.py"), *(ROOT / "views").glob("*.py")]
    files += [ROOT / n for n in ("app.py", "ui.py", "pagelist.py", "app_conformance.py")]
    out = []
    for f in files:
        rel = f.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), f))
    return out


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) of every import in the file, function-level ones too."""
    tree = ast.parse(path.read_text())
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            # `from lifelong import runs`: the unit is what is imported, not the package
            if name == "lifelong":
                found += [(node.lineno, f"lifelong.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def test_every_module_has_a_layer():
    missing = sorted({unit(m) for m, _ in sources() if layer_of(unit(m)) is None})
    assert not missing, f"give these a layer in tests/test_layers.py: {missing}"


def test_no_layer_imports_a_higher_one():
    wrong = []
    for module, path in sources():
        mine = layer_of(unit(module))
        for line, name in imports(path, module):
            theirs = layer_of(unit(name))
            if theirs is None or unit(name) == unit(module):
                continue
            rel = path.relative_to(ROOT)
            if theirs > mine:
                wrong.append(
                    f"{rel}:{line} ({LAYERS[mine][0]}) imports {name} ({LAYERS[theirs][0]})"
                )
            for a, b in SIBLINGS:
                if {unit(module), unit(name)} == {a, b}:
                    wrong.append(f"{rel}:{line}: {unit(module)} imports its sibling {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: a function-level import of a higher layer is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from lifelong.explore import latentmap\n")
    assert imports(f, "lifelong.train.m") == [(2, "lifelong.explore")]
