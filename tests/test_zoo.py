"""The shipped zoo: every entry of lifelong/zoo.py is in pretrained/, made as the entry says,
and the folder stays within DESIGN.md's 80 MB."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong import runs
from lifelong.data import parse_tasks
from lifelong.zoo import ZOO

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
BUDGET = 80_000_000  # bytes: DESIGN.md's "<= 80 MB", read in decimal megabytes (the stricter)


def test_pretrained_fits_its_budget():
    used = sum(p.stat().st_size for p in PRETRAINED.rglob("*") if p.is_file())
    assert used <= BUDGET, f"pretrained/ holds {used / 1e6:.2f} MB, over {BUDGET / 1e6:.0f} MB"


@pytest.mark.parametrize("entry", ZOO, ids=[e["name"] for e in ZOO])
def test_each_zoo_entry_is_shipped_as_described(entry):
    run = runs.open_run(PRETRAINED / entry["name"])
    assert run.family == entry["family"]
    assert run.tasks == parse_tasks(",".join(entry["tasks"]))  # spec strings as normalised
    assert run.manifest["seed"] == entry["seed"]
    config = run.manifest["config"]
    for key, value in entry["set"].items():
        if key != "joint":  # the trainer's option, not the family's config
            assert config[key] == value, (key, config[key], value)
    # the evaluation images it carries: the entry's number a task, fewer where a split is smaller
    carried = [run.manifest["evaldata"][str(j)]["n"] for j in range(len(entry["tasks"]))]
    assert max(carried) <= entry["eval_images"]


def test_index_names_every_shipped_run():
    index = (PRETRAINED / "README.md").read_text()
    assert all(f"`{e['name']}`" in index for e in ZOO)
