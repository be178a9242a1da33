"""Evaluation data inside the run (DESIGN.md, "Run format"): for each task a fixed, seeded
sample of its test split, so every page and `eval` work where the dataset is absent (a run
copied to a laptop, uploaded to a colleague's app, trained on a GPU machine's files).

    RUN/evaldata-03.safetensors   x uint8 [N, C, H, W], y int64 [N], index int64 [N] (the
                                  images' positions in the full test split), factors float32
                                  [N, F] where the dataset has ground-truth factors
    manifest["evaldata"]["3"]     {"file", "sha256", "bytes", "n", "classes", "factor_names"}

N = EVAL_IMAGES (512: 0.4 MB for a 28x28 task) or the run's `eval_images` (TrainArgs; the
Fashion-MNIST zoo stores 256 to fit pretrained/'s budget), fewer for a smaller test split. The
trainer writes a task's sample with the first snapshot; `eval --write` and `pretrain` add them
to runs made before this existed.

Where test images come from (`test_sets`): an embedded dataset (digits, glyphs, shapes,
textured) is generated, as it always was: it reads no file a manifest names. A dataset read
from files is read only when the caller allows it (the command line: yes; the app: for runs
this machine trained, and only inside its configured data roots) and it is present; otherwise
the stored sample stands in, and the caller is told so in one line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from lifelong import data as ldata
from lifelong import runs
from lifelong.data.registry import parse_spec

EVAL_IMAGES = 512
# One draw for every run, not the run's seed: runs over the same tasks carry the same images,
# so they can be put side by side on the same inputs.
EVAL_SEED = 0
MAX_EVAL_IMAGES = 4096  # what a stored sample may hold (a foreign run's is checked)
MAX_CLASSES = 10_000


@dataclass
class StoredTask(ldata.TaskData):
    """A task's stored evaluation sample: a TaskData whose `index` holds each image's position
    in the full test split (the latent map's stored points are indexed that way)."""

    index: torch.Tensor | None = None


def sample(
    data: ldata.TaskData, seed: int = EVAL_SEED, n: int = EVAL_IMAGES
) -> dict[str, torch.Tensor]:
    """The tensors of a task's stored sample: n test images drawn by `seed` (kept in test-set
    order), pixels quantised to uint8 (the datasets' own precision)."""
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(data), generator=g)[:n].sort().values
    out = {
        "x": (data.x[idx] * 255).round().clamp(0, 255).to(torch.uint8).contiguous(),
        "y": data.y[idx].to(torch.int64).contiguous(),
        "index": idx.to(torch.int64),
    }
    if data.factors is not None:
        out["factors"] = data.factors[idx].float().contiguous()
    return out


def write(
    run_dir: Path,
    manifest: dict,
    task: int,
    data: ldata.TaskData,
    seed: int = EVAL_SEED,
    n: int = EVAL_IMAGES,
) -> dict:
    """Write task `task`'s sample of n images as evaldata-{task:02d}.safetensors and record it
    in manifest["evaldata"] (not yet written: the caller writes the manifest). A smaller n
    draws the first n of the same permutation: a subset of the larger sample."""
    if not 0 < n <= MAX_EVAL_IMAGES:
        raise ValueError(f"evaluation images per task must be 1 to {MAX_EVAL_IMAGES}, not {n}")
    blob = st_save(sample(data, seed, n))
    fname = f"evaldata-{task:02d}.safetensors"
    runs.atomic_write(Path(run_dir) / fname, blob)
    entry = {
        "file": fname,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "n": min(n, len(data)),
        "classes": list(data.classes),
        "factor_names": list(data.factor_names) if data.factor_names else None,
    }
    manifest.setdefault("evaldata", {})[str(task)] = entry
    return entry


def write_missing(
    run_dir: Path,
    manifest: dict,
    tests: list[ldata.TaskData],
    seed: int = EVAL_SEED,
    n: int = EVAL_IMAGES,
) -> list[int]:
    """Store the sample of every task in `tests` the run does not carry yet; returns those
    task indexes. Samples already stored are left as they are (their bytes never change)."""
    have = manifest.get("evaldata", {})
    added = [j for j in range(len(tests)) if str(j) not in have]
    for j in added:
        write(run_dir, manifest, j, tests[j], seed, n)
    return added


def stored(run: runs.Run, task: int) -> StoredTask:
    """Task `task`'s stored sample as a TaskData (x float32 in [0, 1]), checked like every
    file of an untrusted run: checksum, dtypes, shapes against the run's image shape, labels
    within the class list. RunError (one line) otherwise, or if the run has none."""
    entry = run.manifest.get("evaldata", {}).get(str(task))
    spec = run.tasks[task]
    if entry is None:
        raise runs.RunError(
            f"{run.name}: task {task} ({spec}) is not on this machine and the run carries no"
            " evaluation images for it; add them with `python -m lifelong eval RUN --write`"
            " where the dataset is"
        )
    t = run.read_entry(entry)
    bad = f"{run.name}: evaluation data of task {task} is malformed"
    x, y, index, factors = t.get("x"), t.get("y"), t.get("index"), t.get("factors")
    classes, names = entry.get("classes"), entry.get("factor_names")
    shape = tuple(run.manifest["config"].get("image_shape") or ())
    if x is None or x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise runs.RunError(f"{bad} (images are not uint8 of shape N x {shape})")
    n = x.shape[0]
    if not 0 < n <= MAX_EVAL_IMAGES:
        raise runs.RunError(f"{bad} ({n} images; 1 to {MAX_EVAL_IMAGES} expected)")
    for name, value in (("labels", y), ("index", index)):
        if value is None or value.dtype != torch.int64 or tuple(value.shape) != (n,):
            raise runs.RunError(f"{bad} ({name} are not {n} int64 values)")
    if (
        not isinstance(classes, list)
        or not 0 < len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) for c in classes)
    ):
        raise runs.RunError(f"{bad} (no list of class names)")
    if int(y.min()) < 0 or int(y.max()) >= len(classes) or int(index.min()) < 0:
        raise runs.RunError(f"{bad} (labels or indexes out of range)")
    if factors is not None:
        if not (
            isinstance(names, list)
            and factors.dtype == torch.float32
            and tuple(factors.shape) == (n, len(names))
            and all(isinstance(s, str) for s in names)
        ):
            raise runs.RunError(f"{bad} (factors do not match their names)")
    else:
        names = None
    return StoredTask(spec, x.float() / 255, y, classes, factors, names, task=None, index=index)


def reads_files(spec: str) -> bool:
    """Whether the dataset of `spec` is read from files (mnist, fashion, folder ...) rather
    than generated; a spec this version cannot parse counts as files."""
    try:
        return parse_spec(spec).info.path != "never"
    except ldata.DataError:
        return True


def test_sets(
    run: runs.Run, allow=None, load=ldata.load_task, read=None
) -> tuple[list[ldata.TaskData], list[str]]:
    """Every task's test data and one line per task that uses its stored sample instead.

    `allow(spec) -> bool` says whether a dataset read from files may be read for this run
    (None: any, as on the command line); a refused or absent one uses the stored sample.
    `load(spec, split, seed)` and `read(run, task)` default to load_task and `stored` (the
    app passes cached ones). RunError if a task has neither."""
    read = read or stored
    seed = run.manifest.get("seed", 0)
    sets, notes = [], []
    for j, spec in enumerate(run.tasks):
        why = None
        if not reads_files(spec):
            sets.append(load(spec, "test", seed))
            continue
        if allow is None or allow(spec):
            try:
                sets.append(load(spec, "test", seed))
                continue
            except ldata.DataError:
                why = "the dataset is not on this machine"
        else:
            why = "datasets named by this run are not read here"
        data = read(run, j)
        sets.append(data)
        notes.append(f"task {j} ({spec}): the run's stored {len(data)} test images ({why})")
    return sets, notes
