"""The mechanism behind lifelong/events.py: the Event base class and its registry of kinds,
the stored form and its reading (formats, field types checked against each kind's
annotations, unknown kinds kept as `Other`). The kinds themselves, and the module every reader
imports, are lifelong.events.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

FORMAT = 2  # 1: plain dicts (no "events_format" key); 2: typed, dimension_grown's from/to renamed

KINDS: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class Mark:
    """What an event writes in expert `expert`'s cell of the timeline at its task.

    `lasting`: the state holds for every later task too (frozen, pruned); `note`: added after
    whatever the cell says (unless a lasting state holds it) instead of replacing it;
    `from_next`: a lasting state that starts with the next task (an expert frozen at the end
    of the task it learnt)."""

    expert: int
    text: str
    lasting: bool = False
    note: bool = False
    from_next: bool = False


@dataclass(frozen=True)
class Event:
    """Base of every event kind: `task` is the task whose boundary it marks; `extra` keeps
    fields a reader does not declare (an older or newer writer's), written back unchanged."""

    task: int
    extra: dict = field(default_factory=dict, repr=False, kw_only=True)

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if isinstance(kind, str) and kind:
            KINDS[kind] = cls

    def describe(self) -> str:
        """One line for the Overview's list of events."""
        shown = {k: v for k, v in self.fields().items() if k != "task"}
        return ", ".join(f"{k}={_short(v)}" for k, v in shown.items()) or self.kind

    def marks(self) -> list[Mark]:
        """What the Expert timeline shows in experts' cells for this event (none by default)."""
        return []

    def fields(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return out | self.extra

    def to_dict(self) -> dict:
        """The stored form: {"type": kind, "task": t, ...fields}."""
        return {"type": self.kind, **_plain(self.fields())}

    # the dict view, for code written against format 1
    def __getitem__(self, key: str):
        if key == "type":
            return self.kind
        values = self.fields()
        if key not in values:
            raise KeyError(key)
        return values[key]

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: str) -> bool:
        return key == "type" or key in self.fields()


@dataclass(frozen=True)
class Other(Event):
    """An event of a kind this process does not know (a plugin's, a newer version's): its
    fields are kept as they were stored."""

    name: str = ""

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.name

    def fields(self) -> dict[str, Any]:
        return {"task": self.task} | self.extra

    def describe(self) -> str:
        shown = {k: v for k, v in self.extra.items()}
        return ", ".join(f"{k}={_short(v)}" for k, v in shown.items()) or self.name


# -- reading and writing ---------------------------------------------------------------------
RENAMED = {1: {"dimension_grown": {"from": "from_dim", "to": "to_dim"}}}


def parse(data: dict, fmt: int = FORMAT, task: int | None = None) -> Event:
    """An event from its stored form (format `fmt`), fields type-checked: ValueError (one
    line) names the first field that is wrong. `task` fills a missing "task" (a hook's
    dict). A kind this process does not know becomes `Other`."""
    if not isinstance(data, dict):
        raise ValueError("an event is not an object")
    data = dict(data)
    kind = data.pop("type", None)
    if not isinstance(kind, str) or not kind or len(kind) > 100:
        raise ValueError("an event has no type")
    if task is not None:
        data.setdefault("task", task)
    for old, new in RENAMED.get(fmt, {}).get(kind, {}).items():
        if old in data:
            data[new] = data.pop(old)
    t = data.pop("task", 0)
    if not _is_int(t):
        raise ValueError(f"{kind}: task={_short(t)} is not a whole number")
    import lifelong.events  # noqa: F401  (registers the built-in kinds)

    cls = KINDS.get(kind)
    if cls is None or fmt > FORMAT:
        return Other(t, name=kind, extra=data)
    hints = typing.get_type_hints(cls)
    declared = {f.name for f in dataclasses.fields(cls) if f.init} - {"task", "extra"}
    kwargs = {}
    for name in declared & set(data):
        value = data.pop(name)
        if not _conforms(value, hints[name]):
            raise ValueError(f"{kind}: {name}={_short(value)} is not {_what(hints[name])}")
        kwargs[name] = float(value) if hints[name] is float else value
    return cls(t, **kwargs, extra=data)


def from_hook(returned, task: int) -> list[dict]:
    """What a family's before_task / after_task returned, as stored dicts tagged with `task`
    where an event names none. Events are written as they are; a plain dict (a plugin written
    against format 1) is parsed first, so a malformed one fails here with its field named."""
    if not isinstance(returned, list | tuple):
        raise ValueError(f"a task hook returned {type(returned).__name__}, not a list of events")
    out = []
    for e in returned:
        if not isinstance(e, Event):
            e = parse(e, 1, task)
        out.append(e.to_dict())
    return out


def load(stored: list, fmt: int) -> list[Event]:
    """A manifest's events (format `fmt`) as typed events; ValueError names the first bad one."""
    out = []
    for i, e in enumerate(stored):
        try:
            out.append(parse(e, fmt))
        except ValueError as exc:
            raise ValueError(f"events[{i}]: {exc}") from None
    return out


# -- helpers ---------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _conforms(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return _is_int(value) or isinstance(value, float)
    if hint is str:
        return isinstance(value, str)
    if hint is dict:
        return isinstance(value, dict)
    return False


def _what(hint) -> str:
    words = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    if typing.get_origin(hint) is list:
        return "a list of " + _what(typing.get_args(hint)[0]).removeprefix("a ") + "s"
    return words.get(hint, "of the right type")


def _plain(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _fmt(values) -> str:
    if not values:
        return "[]"
    return "[" + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values) + "]"


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
