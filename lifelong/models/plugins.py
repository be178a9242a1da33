"""Families from outside the project: a researcher's own model, plugged in without editing
the project.

Two ways in:

- an installed package declares an entry point in the group `lifelong.families`, its name the
  family key and its value the class (`pyproject.toml`:
  `[project.entry-points."lifelong.families"] mymodel = "mypackage.model:MyModel"`); the
  family then appears in `python -m lifelong models`, on the Train page and on every page;
- the command line names a class directly: `--model mypackage.model:MyModel`, imported because
  the user asked for it, in that process only; `LIFELONG_PLUGINS=mypackage.model:MyModel`
  (comma-separated) does the same for every process of this user (the app, `eval`), for a
  module that is not packaged.

The class subclasses `lifelong.models.GenerativeModel` and sets `family` and `config_cls` (a
dataclass whose fields are the family's --set options, with `image_shape` and `n_tasks`).

A run records its family key in its manifest. Opening it needs the plugin installed here:
a manifest's family string is never imported (a run folder is untrusted input, and importing
a module it names would run code); it is only matched against the installed entry points
(by name or by value) and the families registered in this process.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from importlib.metadata import EntryPoint, entry_points

GROUP = "lifelong.families"
ENV = "LIFELONG_PLUGINS"
PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class PluginError(ValueError):
    """A plugin that cannot be used; one line saying why."""


def configured() -> list[str]:
    """The `package.module:Class` paths named by LIFELONG_PLUGINS (read on every call)."""
    return [p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip()]


def installed() -> dict[str, EntryPoint]:
    """Entry point name -> entry point, for every installed family plugin."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def checked(cls, where: str):
    """(cls, cls.config_cls) if `cls` is a usable family class, else PluginError."""
    from lifelong.models.base import Capabilities, GenerativeModel

    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise PluginError(f"{where} is not a subclass of lifelong.models.GenerativeModel")
    cfg = getattr(cls, "config_cls", None)
    if not (isinstance(cfg, type) and dataclasses.is_dataclass(cfg)):
        raise PluginError(f"{where} has no config_cls dataclass (its --set options)")
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        raise PluginError(f"{where}: capabilities is not a lifelong.models.Capabilities")
    try:
        cfg()
    except TypeError as exc:
        raise PluginError(
            f"{where}: its config_cls needs a default for every field ({exc})"
        ) from None
    return cls, cfg


def from_entry_point(key: str):
    """(cls, config_cls) of the installed plugin named `key` (or whose value is `key`), or
    None if none is installed."""
    for name, ep in installed().items():
        if key in (name, ep.value):
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin package: one line, whatever it raised
                raise PluginError(f"plugin {name!r} ({ep.value}) fails to load: {exc}") from None
            return checked(cls, f"plugin {name!r} ({ep.value})")
    return None


def from_path(path: str):
    """(cls, config_cls) of `package.module:Class`, imported (the command line's --model)."""
    if not PATH.match(path):
        raise PluginError(f"--model {path!r}: a family key or package.module:Class")
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise PluginError(f"--model {path}: cannot import {module} ({exc})") from None
    except AttributeError:
        raise PluginError(f"--model {path}: {module} has no {name}") from None
    return checked(cls, f"--model {path}")


def missing(key: str) -> str:
    """The message for a family that is neither built in nor installed."""
    if ":" in key or PATH.match(key or ""):
        return (
            f"family {key!r} is a plugin that is not installed here: install the package that"
            f" provides it (entry point group {GROUP})"
        )
    return ""
