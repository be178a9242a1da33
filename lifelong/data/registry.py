"""Dataset names, spec parsing and `load_task`.

A spec is `name[:opt[:opt...]]`, e.g. `digits:classes=0-4:invert` or `mnist:path=/data/mnist`.
A task sequence is a comma-separated list of specs (`parse_tasks`). Options, in the fixed
order they are applied (and written in the normalised spec):

    path=DIR      only for datasets read from files (mnist, fashion, kmnist)
    classes=A-B   keep only these class indexes (A-B inclusive, A, or A+B+C; mixable as 0-2+7);
                  y keeps the original indexes and `classes` the full list of names
    rotate=DEG    rotate every image DEG degrees counter-clockwise, bilinear
    size=N        resize to N x N (8..256), bilinear
    permute=SEED  fixed pixel permutation drawn from SEED (permuted-MNIST style)
    invert        1 - x
    rgb           repeat the grey channel to 3 channels

A dataset may also declare options of its own (`DatasetInfo.own_options`, e.g. textured's
fg= and texture=): each takes one of a fixed list of values, is given to its loader as a
keyword, and comes first in the normalised spec.

The datasets themselves are registered in catalog.py: adding one is one
`register(DatasetInfo(...))` call there, with a loader returning `Raw`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import transforms
from .base import DataError, TaskData

SPLITS = ("train", "test")


@dataclass
class Raw:
    """What a dataset loader returns, before transforms. x: uint8 (0..255) or float32 (0..1)
    numpy [N, H, W] (grey) or [N, C, H, W]; y: int64 [N]; factors: float32 [N, F] or None."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    factors: np.ndarray | None = None
    factor_names: list[str] | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset name. `load(split, seed, path)` returns Raw; `path` is "never" (embedded),
    "optional" (with `default_path`) or "required". `classes` may be None when only the data
    know them (then class indexes are checked at load time)."""

    name: str
    purpose: str
    load: Callable[[str, int, str | None], Raw]
    classes: tuple[str, ...] | None
    train: int | str
    test: int | str
    shape: tuple[int, int, int] = (1, 28, 28)
    path: str = "never"
    default_path: str | None = None
    extra: dict = field(default_factory=dict)
    own_options: dict = field(default_factory=dict)  # key -> valid values (str), to `load`


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    REGISTRY[info.name] = info


# ---------------------------------------------------------------------------------------------
# options: key -> (takes a value, usage shown in messages); dict order = order of application


OPTIONS = {
    "path": (True, "path=DIR"),
    "classes": (True, "classes=A-B"),
    "rotate": (True, "rotate=DEG"),
    "size": (True, "size=N"),
    "permute": (True, "permute=SEED"),
    "invert": (False, "invert"),
    "rgb": (False, "rgb"),
}
SIZE_RANGE = (8, 256)
MAX_CLASS_INDEX = 9999  # no dataset has more classes (folder: 1,000); bounds classes=0-1e12
MAX_SEED = 2**64 - 1  # permute=SEED: the largest torch.Generator.manual_seed takes


def _valid_options(info: DatasetInfo) -> list[str]:
    own = [f"{k}={'|'.join(v)}" for k, v in info.own_options.items()]
    return own + [u for k, (_, u) in OPTIONS.items() if k != "path" or info.path != "never"]


def _file_datasets() -> str:
    return ", ".join(n for n, i in REGISTRY.items() if i.path != "never")


def _parse_classes(val: str, info: DatasetInfo, spec: str) -> tuple[int, ...]:
    out: set[int] = set()
    try:
        for item in val.split("+"):
            a, dash, b = item.strip().partition("-")
            lo, hi = int(a), int(b) if dash else int(a)
            if lo < 0 or hi < lo or hi > MAX_CLASS_INDEX:
                raise ValueError
            out.update(range(lo, hi + 1))
    except ValueError:
        raise DataError(
            f"bad classes '{val}' in '{spec}': use A-B (inclusive), A, or A+B+C with "
            f"class indexes 0..{MAX_CLASS_INDEX}, e.g. classes=0-4"
        ) from None
    n = len(info.classes) if info.classes is not None else None
    if n is not None and max(out) >= n:
        raise DataError(
            f"classes={val} in '{spec}': index {max(out)} out of range, '{info.name}' has "
            f"{n} classes (0-{n - 1})"
        )
    return tuple(sorted(out))


def format_classes(idx: tuple[int, ...]) -> str:
    """(0,1,2,3,4,7) -> '0-4+7': runs of consecutive indexes as A-B, joined by '+'."""
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return "+".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _format_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _parse_value(key: str, val: str, info: DatasetInfo, spec: str):
    if key == "classes":
        return _parse_classes(val, info, spec)
    if key == "path":
        if not val:
            raise DataError(f"empty path in '{spec}': write path=DIR")
        return val
    try:
        if key == "rotate":
            v = float(val)
            if not math.isfinite(v):
                raise ValueError
            return v
        v = int(val)
    except ValueError:
        kind = "a number of degrees" if key == "rotate" else "an integer"
        raise DataError(f"bad value for {key} in '{spec}': '{val}' is not {kind}") from None
    if key == "size" and not SIZE_RANGE[0] <= v <= SIZE_RANGE[1]:
        raise DataError(f"size={v} in '{spec}' out of range {SIZE_RANGE[0]}..{SIZE_RANGE[1]}")
    if key == "permute" and not 0 <= v <= MAX_SEED:
        raise DataError(f"permute={v} in '{spec}': the seed must be >= 0 and at most {MAX_SEED}")
    return v


def _format_option(key: str, v) -> str:
    if not OPTIONS[key][0]:
        return key
    if key == "classes":
        return f"classes={format_classes(v)}"
    if key == "rotate":
        return f"rotate={_format_number(v)}"
    return f"{key}={v}"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: dataset info and option values (classes as a sorted tuple of indexes,
    rotate float, size/permute int, path str, flags True)."""

    info: DatasetInfo
    options: dict

    @property
    def name(self) -> str:
        """Normalised spec string: lower-case name, options in application order."""
        own = [f"{k}={self.options[k]}" for k in self.info.own_options if k in self.options]
        opts = [_format_option(k, self.options[k]) for k in OPTIONS if k in self.options]
        return ":".join([self.info.name, *own, *opts])


def parse_spec(spec: str) -> Spec:
    """Parse and validate one spec without touching any data or file. Raises DataError."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("empty dataset spec; valid names: " + ", ".join(REGISTRY))
    text = spec.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in text):  # newlines, NUL, escapes: refused
        raise DataError(f"control character in dataset spec {text!r}")
    if "," in text:
        raise DataError(f"'{text}' is a list of tasks; give one spec (parse_tasks splits lists)")
    name, *parts = [p.strip() for p in text.split(":")]
    info = REGISTRY.get(name.lower())
    if info is None:
        raise DataError(f"unknown dataset '{name}'; valid names: {', '.join(REGISTRY)}")
    opts: dict = {}
    for part in parts:
        key, eq, val = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not key:
            raise DataError(f"empty option in '{text}'; valid options: " + _usage(info))
        if key in info.own_options:
            valid = info.own_options[key]
            if key in opts:
                raise DataError(f"option '{key}' given twice in '{text}'")
            if not eq:
                usage = f"{key}={'|'.join(valid)}"
                raise DataError(f"option '{key}' in '{text}' needs a value: {usage}")
            if val.lower() not in valid:
                raise DataError(
                    f"bad value for {key} in '{text}': '{val}'; valid: {', '.join(valid)}"
                )
            opts[key] = val.lower()
            continue
        if key not in OPTIONS:
            raise DataError(f"unknown option '{key}' in '{text}'; valid options: " + _usage(info))
        if key == "path" and info.path == "never":
            raise DataError(
                f"option 'path' is only for datasets read from files ({_file_datasets()}); "
                f"'{info.name}' is built in"
            )
        if key in opts:
            raise DataError(f"option '{key}' given twice in '{text}'")
        takes_value, usage = OPTIONS[key]
        if takes_value and not eq:
            raise DataError(f"option '{key}' in '{text}' needs a value: {usage}")
        if not takes_value and eq:
            raise DataError(f"option '{key}' in '{text}' takes no value: write :{key}")
        opts[key] = _parse_value(key, val, info, text) if takes_value else True
    if info.path == "required" and "path" not in opts:
        raise DataError(
            f"'{info.name}' is read from IDX files you have: pass {info.name}:path=DIR "
            "(a folder with train-images-idx3-ubyte[.gz] etc.)"
        )
    return Spec(info, opts)


def _usage(info: DatasetInfo) -> str:
    return ", ".join(_valid_options(info))


def parse_tasks(text: str) -> list[str]:
    """'digits:classes=0-4,digits:classes=5-9,glyphs' -> list of normalised specs. Validates
    every name and option without generating data or reading files; raises DataError."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("no tasks given; write e.g. digits:classes=0-4,digits:classes=5-9")
    out = []
    for i, item in enumerate(text.split(",")):
        if not item.strip():
            one_line = " ".join(text.split())
            raise DataError(f"empty task at position {i + 1} in '{one_line}'")
        out.append(parse_spec(item).name)
    return out


def image_shape(spec: str) -> tuple[int, int, int]:
    """(C, H, W) of the images `spec` produces, without generating data."""
    s = parse_spec(spec)
    c, h, w = s.info.shape
    if "mode" in s.info.own_options:  # svhn, cifar10, folder: mode=rgb|grey
        c = 3 if s.options.get("mode", s.info.own_options["mode"][0]) == "rgb" else 1
    if "size" in s.options:
        h = w = s.options["size"]
    if s.options.get("rgb"):
        c = 3
    return (c, h, w)


def load_task(spec: str, split: str = "train", seed: int = 0) -> TaskData:
    """Load one task: x float32 [N, C, H, W] in [0, 1], y int64 [N]. Deterministic given
    (spec, split, seed); the seed only changes generated datasets (glyphs, shapes). Train and
    test are fixed, disjoint splits. Transforms apply in the order given in the module doc."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
    given = seed  # it may come from a manifest: the generators need an integer >= 0
    try:
        seed = int(seed)
    except (TypeError, ValueError, OverflowError):
        seed = -1
    if seed < 0:
        raise DataError(f"bad seed {str(given)[:40]!r}: use an integer >= 0")
    s = parse_spec(spec)
    o = s.options
    own = {k: o[k] for k in s.info.own_options if k in o}
    raw = s.info.load(split, seed, o.get("path"), **own)
    x = torch.from_numpy(np.ascontiguousarray(raw.x))
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clone()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    y = torch.from_numpy(np.asarray(raw.y, np.int64)).clone()
    factors = None if raw.factors is None else torch.from_numpy(raw.factors).float().clone()
    if "classes" in o:
        keep_ids = o["classes"]
        if max(keep_ids) >= len(raw.classes):
            raise DataError(
                f"classes in '{s.name}': index {max(keep_ids)} out of range, the data have "
                f"{len(raw.classes)} classes (0-{len(raw.classes) - 1})"
            )
        keep = torch.isin(y, torch.tensor(keep_ids, dtype=torch.int64))
        x, y = x[keep], y[keep]
        factors = None if factors is None else factors[keep]
    if len(x) == 0:  # an empty file, or a class subset the data do not have: nothing to learn
        raise DataError(f"'{s.name}' has no {split} images")
    if "rotate" in o:
        x = transforms.rotate(x, o["rotate"])
    if "size" in o:
        x = transforms.resize(x, o["size"])
    if "permute" in o:
        x = transforms.permute(x, o["permute"])
    if o.get("invert"):
        x = transforms.invert(x)
    if o.get("rgb"):
        x = transforms.rgb(x)
    return TaskData(s.name, x.contiguous(), y, list(raw.classes), factors, raw.factor_names)


def datasets() -> list[dict]:
    """One dict per dataset name: name, shape ('1x28x28'), train / test sizes (int, or
    'from files'), classes (count), purpose (one line), options (usage strings)."""
    return [
        {
            "name": i.name,
            "shape": "x".join(map(str, i.shape)),
            "train": i.train,
            "test": i.test,
            "classes": len(i.classes) if i.classes is not None else "from files",
            "purpose": i.purpose,
            "options": _valid_options(i),
            **i.extra,
        }
        for i in REGISTRY.values()
    ]
