"""Data roots (issue 14): the app reads datasets only inside configured folders. Defaults, the
LIFELONG_DATA_ROOTS variable (read on every call), symlinks and `..` that lead out, relative
paths, the `fashion` default folder; the refusal is one line naming the path and the roots."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from lifelong.data import DataError, check_roots, data_roots, registry, roots


@pytest.fixture
def root(tmp_path, monkeypatch):
    """tmp/root is the one extra data root; tmp/outside is not a root."""
    (tmp_path / "root" / "mnist").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    monkeypatch.setenv(roots.ENV, str(tmp_path / "root"))
    return tmp_path / "root"


def test_default_and_configured_roots(tmp_path, monkeypatch):
    monkeypatch.delenv(roots.ENV, raising=False)
    project = Path(__file__).resolve().parents[2]
    defaults = data_roots()
    assert defaults[:2] == [project / "data", Path("/usr/share/datasets").resolve()]
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(roots.ENV, os.pathsep.join([str(a), "", str(b), str(a)]))
    assert data_roots() == [*defaults, a, b]  # read again on this call; empties and twins gone
    monkeypatch.setenv(roots.ENV, str(b))
    assert data_roots() == [*defaults, b]


def test_paths_inside_roots_pass(root):
    check_roots(f"mnist:path={root / 'mnist'},digits,glyphs:invert")
    check_roots([f"kmnist:path={root}/mnist/", "folder:path=" + str(root)])  # a list of specs
    check_roots(f"svhn:path={root / 'not-yet-there'}")  # inside: the loader says it is missing
    check_roots("digits:classes=0-4,shapes")  # nothing read from files: nothing to check


def test_paths_outside_are_one_line_naming_path_roots_and_variable(root, tmp_path):
    outside = tmp_path / "outside"
    with pytest.raises(DataError) as e:
        check_roots(f"digits,mnist:path={outside}")
    msg = str(e.value)
    assert "\n" not in msg and f"'mnist': path '{outside}' is outside the data roots" in msg
    assert str(root) in msg and "/usr/share/datasets" in msg and roots.ENV in msg
    for path in ("/etc", "/", f"{root}/../outside", f"{root}/mnist/../../outside"):
        with pytest.raises(DataError, match="outside the data roots"):
            check_roots(f"folder:path={path}")


def test_symlinks_are_resolved(root, tmp_path):
    (root / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(DataError, match="escape' is outside the data roots") as e:
        check_roots(f"mnist:path={root / 'escape'}")
    assert str(tmp_path / "outside") not in str(e.value)  # says nothing of where it leads
    # a root reached through a link is the folder it resolves to
    (tmp_path / "link-to-root").symlink_to(root)
    check_roots(f"mnist:path={tmp_path / 'link-to-root' / 'mnist'}")


def test_relative_and_home_paths(root, tmp_path, monkeypatch):
    monkeypatch.chdir(root)
    monkeypatch.setattr(roots, "PROJECT", root)  # the trainer's cwd: the same root here
    check_roots("mnist:path=mnist")
    with pytest.raises(DataError, match="outside"):
        check_roots("mnist:path=../outside")
    # a relative path must be inside from both places it may be read from
    monkeypatch.setattr(roots, "PROJECT", tmp_path / "outside")
    with pytest.raises(DataError, match="'mnist' is outside"):
        check_roots("mnist:path=mnist")
    monkeypatch.setenv("HOME", str(tmp_path / "outside"))
    with pytest.raises(DataError, match="'~/x' is outside"):
        check_roots("mnist:path=~/x")


def test_default_folders_are_checked_too(root, monkeypatch, tmp_path):
    check_roots("fashion")  # /usr/share/datasets/fashion-mnist: a default root
    info = dataclasses.replace(registry.REGISTRY["fashion"], default_path=str(tmp_path / "x"))
    monkeypatch.setitem(registry.REGISTRY, "fashion", info)
    with pytest.raises(DataError, match="'fashion': path .* is outside"):
        check_roots("fashion:invert")


def test_malformed_specs_raise_their_usual_error(root):
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        check_roots("digits,nope")
    with pytest.raises(DataError, match="no tasks given"):
        check_roots("")
    with pytest.raises(DataError, match="control character"):
        check_roots(f"mnist:path={root}\x00/etc")
