"""The claims table: figures read from the shipped runs, verdicts that can fail, README in step."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from lifelong import claims, models
from lifelong.data import load_task
from lifelong.explore.dependence import components

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "pretrained"


def test_every_claim_has_a_verdict_on_the_shipped_runs():
    """Each claim is measured on every column it names: a missing run or stored metric would
    show as "not built here" / "not measured" instead of a figure."""
    for row in claims.rows(PRETRAINED):
        for col in claims.COLUMNS:
            cell = row[col]
            if cell["text"].startswith("n/a"):
                continue
            assert cell["holds"] is not None, (row["claim"], col, cell["text"])


def test_readme_quotes_the_table_the_runs_give():
    """README.md's claims table is the one `lifelong.claims` computes from pretrained/ today."""
    table = claims.markdown(claims.rows(PRETRAINED))
    readme = (ROOT / "README.md").read_text()
    missing = [line for line in table.splitlines() if line not in readme]
    assert not missing, "README.md's claims table is out of date:\n" + "\n".join(missing)
    assert table in (PRETRAINED / "README.md").read_text()


def test_a_verdict_can_fail(tmp_path):
    """Put the fine-tuned VAE where L-MVAE belongs: 'frozen experts keep the first task' then
    reads the VAE's forgetting and says no; a missing run says so instead of guessing."""
    name = f"lmvae-{claims.E3}"
    shutil.copytree(PRETRAINED / f"vae-{claims.E3}", tmp_path / name)
    kept = next(c for c in claims.CLAIMS if c.claim == "frozen experts keep the first task")
    row = claims._cell(kept, "embedded", tmp_path)
    assert row["holds"] is False and "×" not in row["text"] and "→" in row["text"]
    assert claims._cell(kept, "fashion", tmp_path) == {"text": "not built here", "holds": None}
    routing = next(c for c in claims.CLAIMS if "routes" in c.claim)
    assert claims._cell(routing, "embedded", tmp_path)["text"].startswith("not measured")


def test_components_metric_sees_dependent_components():
    """A mixture whose two components are one network copied has identical codes: normalised
    HSIC near 1 and equal component MSEs; re-drawing one component's weights lowers the HSIC."""
    torch.manual_seed(0)
    _, cfg_cls = models.family("mvae")
    cfg = cfg_cls(n_components=2, latent_dim=3, channels=4, hidden=16, image_shape=(1, 28, 28))
    model = models.family("mvae")[0](cfg).eval()
    for mods in model.component_modules():
        mods[1].load_state_dict(mods[0].state_dict())
    tests = [load_task("digits:classes=0-4", "test"), load_task("digits:classes=5-9", "test")]
    same = components(model, tests, n=200)
    assert same["mean_pairwise_hsic_normalised"] > 0.95
    assert abs(same["component_mse"][0] - same["component_mse"][1]) < 1e-6
    torch.manual_seed(1)
    for mods in model.component_modules():
        for p in mods[1].parameters():
            p.data.normal_(0, 0.3)
    apart = components(model, tests, n=200)
    assert apart["mean_pairwise_hsic_normalised"] < same["mean_pairwise_hsic_normalised"] - 0.2
