"""The Forgetting and Compare experts computations on small seeded L-MVAE models."""

from __future__ import annotations

import torch

from lifelong.explore import experts, forgetting
from lifelong.models import build
from lifelong.models.lmvae import LMVAEConfig
from lifelong.runs import open_run
from tests.conftest import synthetic_task


def _model(k: int = 3):
    torch.manual_seed(0)
    return build("lmvae", LMVAEConfig(n_tasks=k, latent_dim=3, hidden=16, channels=4)).eval()


def test_snapshot_rows_are_reproducible_and_mark_unseen_tasks():
    model = _model()
    tests = [synthetic_task(k, 16, seed=i) for i, k in enumerate(["hbar", "vbar", "blob"])]
    a = forgetting.snapshot_rows(model, tests, after_task=0, n=4, seed=1)
    b = forgetting.snapshot_rows(model, tests, after_task=0, n=4, seed=1)
    c = forgetting.snapshot_rows(model, tests, after_task=0, n=4, seed=2)
    assert [r["seen"] for r in a] == [True, False, False]
    assert all(r["samples"].shape == (4, 1, 28, 28) for r in a)
    # the same seed gives the same samples (two snapshots then differ by weights only)
    assert all(torch.equal(r["samples"], s["samples"]) for r, s in zip(a, b, strict=True))
    assert not torch.equal(a[0]["samples"], c[0]["samples"])
    assert torch.equal(a[1]["x"], tests[1].x[:4])


def test_through_every_expert_marks_the_expert_eq7_selects():
    model = _model()
    x = synthetic_task("vbar", 5).x
    out = experts.through_every_expert(model, x)
    assert out["recon"].shape == (3, 5, 1, 28, 28) and out["score"].shape == (3, 5)
    # the routed expert is the one with the best ELBO (select = argmax of eq. 7)
    assert torch.equal(out["routed"], out["score"].argmax(0))
    for k in range(3):
        assert torch.allclose(out["recon"][k], model.reconstruct(x, expert=k))


def test_mismatched_grid_diagonal_is_each_experts_reconstruction():
    model = _model()
    x = synthetic_task("blob", 1).x
    grid = experts.mismatched(model, x)
    assert grid.shape == (3, 3, 1, 28, 28)
    for k in range(3):
        assert torch.allclose(grid[k, k], model.reconstruct(x, expert=k)[0], atol=1e-6)
    assert not torch.allclose(grid[0, 1], grid[0, 0])  # other decoders read the code otherwise


def test_expert_samples_and_scores_per_task():
    model = _model(2)
    s = experts.expert_samples(model, n=3, seed=4)
    assert list(s) == [0, 1] and s[0].shape == (3, 1, 28, 28)
    assert not torch.equal(s[0], s[1])
    tests = [synthetic_task("hbar", 8), synthetic_task("vbar", 8)]
    table = experts.scores_per_task(model, tests)
    assert table.shape == (2, 2)
    torch.manual_seed(0)
    assert torch.allclose(table[1, 0], model.score(tests[1].x, expert=0).mean())
    assert torch.equal(table, experts.scores_per_task(model, tests))  # fixed noise


def test_matrix_csv_and_comparable_runs(tiny_run, tmp_path):
    import shutil

    run = open_run(tiny_run)
    text = forgetting.matrix_csv(run, "mse").splitlines()
    assert text[0].startswith("snapshot,0: digits")
    assert len(text) == 1 + len(run.snapshots)
    assert float(text[-1].split(",")[1]) == run.metric("mse")[-1][0]
    assert forgetting.stored_metrics(run)[:2] == ["mse", "elbo"]
    twin = shutil.copytree(tiny_run, tmp_path / "twin")
    found = forgetting.comparable(run, {"self": run, "twin": open_run(twin)})
    assert list(found) == ["twin"]
    assert forgetting.replayed(run.load_model()) == {}


def test_grid_frames_highlighted_tiles():
    from lifelong.explore import images

    x = torch.ones(3, 1, 4, 4) * 0.5
    plain = images.grid(x, 3, pad=2)
    marked = images.grid(x, 3, pad=2, highlight=[False, True, False])
    assert plain.shape == marked.shape
    # the frame around tile 1 (columns 6..12) is red, the tiles themselves are unchanged
    assert tuple(marked[0, 8]) == images.HIGHLIGHT and tuple(plain[0, 8]) == (200, 200, 200)
    assert (marked[2:6, 2:6] == plain[2:6, 2:6]).all() and (marked[2:6, 8:12] == 128).all()


def test_stored_evaluation_matrices_join_the_training_ones(tiny_run, tmp_path):
    import shutil

    from lifelong.__main__ import main
    from lifelong.explore import overview, summary

    run_dir = shutil.copytree(tiny_run, tmp_path / "evaluated")
    assert "ssim" not in summary.matrix_names(open_run(run_dir))
    assert main(["eval", str(run_dir), "--metrics", "ssim", "--write"]) == 0
    run = open_run(run_dir)
    assert summary.matrix_names(run)[:2] == ["mse", "elbo"] and "ssim" in summary.matrix_names(run)
    z, xs, ys = overview.matrix_labels(run, "ssim")
    assert len(z) == 2 and all(0 < v <= 1 for v in z[-1])
    assert "ssim" in forgetting.stored_metrics(run)
