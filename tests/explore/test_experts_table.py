"""Each expert's ELBO on each task, stored by the trainer beside every snapshot of a mixture
(experts.score_table), is what the Compare experts page computed before (scores_per_task):
on the dataset's test images and on the run's stored sample, for float32 and float16
snapshots; a run without it, or with one that does not fit, computes it again."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lifelong import evaldata, runs
from lifelong.__main__ import main
from lifelong.explore import experts
from tests.data.test_data_idx import make_dir

NETS = ["--set", "latent_dim=2", "--set", "hidden=16", "--set", "channels=4"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """dtype -> a 2-task L-MVAE folder: a tiny MNIST folder's task and a generated digits task."""
    root = tmp_path_factory.mktemp("expert-table")
    data = root / "mnist"
    data.mkdir()
    make_dir(data, n_train=64, n_test=700)  # the stored sample: 512 of them
    out = {}
    for dtype in ("float32", "float16"):
        run = root / dtype
        tasks = f"mnist:path={data},digits:classes=0-1"
        args = ["train", "--model", "lmvae", "--tasks", tasks, "--epochs", "1", "--threads", "1"]
        args += ["--out", str(run), "--device", "cpu", "--store-dtype", dtype, *NETS]
        assert main(args) == 0
        out[dtype] = run
    return out


def _both_sources(run):
    """The page's test sets where it reads the dataset, and where it may not."""
    dataset, notes = evaldata.test_sets(run)
    assert not notes
    sample, notes = evaldata.test_sets(run, allow=lambda spec: False)
    assert len(notes) == 1 and isinstance(sample[0], evaldata.StoredTask)
    return dataset, sample


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_stored_table_is_what_the_page_computes(made, dtype):
    run = runs.open_run(made[dtype])
    assert sorted(run.manifest["extras"][experts.TABLE]) == ["0", "1"]
    for snap in run.snapshots:
        model = run.load_model(snap)
        for tests in _both_sources(run):
            stored = experts.stored_scores(run, snap, model, tests)
            assert stored is not None and stored.shape == (2, 2)
            torch.set_num_threads(1)  # as the app
            computed = experts.scores_per_task(model, tests)
            assert torch.allclose(stored, computed, rtol=1e-5, atol=1e-3), (stored, computed)
        # the two sources are different images: the rows of the file task differ
        a, b = (experts.stored_scores(run, snap, model, t) for t in _both_sources(run))
        assert not torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_run_without_a_fitting_table_computes_it(made, tmp_path):
    src = runs.open_run(made["float32"])
    model = src.load_model(1)
    tests, _ = _both_sources(src)
    # made before the table existed: no entry
    old = tmp_path / "old"
    shutil.copytree(made["float32"], old)
    m = json.loads((old / "manifest.json").read_text())
    del m["extras"][experts.TABLE]
    (old / "manifest.json").write_text(json.dumps(m))
    assert experts.stored_scores(runs.open_run(old), 1, model, tests) is None
    # a table of other experts, another image count or a corrupt file: not used
    t = src.extra(experts.TABLE, 1)
    for change in ({"experts": torch.tensor([1, 0])}, {"n": torch.tensor([128])}):
        bad = tmp_path / f"bad-{next(iter(change))}"
        shutil.copytree(made["float32"], bad)
        m = json.loads((bad / "manifest.json").read_text())
        runs.save_extra(bad, m, experts.TABLE, 1, {**t, **change})
        (bad / "manifest.json").write_text(json.dumps(m))
        assert experts.stored_scores(runs.open_run(bad), 1, model, tests) is None
    corrupt = tmp_path / "corrupt"
    shutil.copytree(made["float32"], corrupt)
    f = corrupt / runs.open_run(corrupt).manifest["extras"][experts.TABLE]["1"]["file"]
    data = bytearray(f.read_bytes())
    data[-4:] = bytes(4)
    f.write_bytes(bytes(data))
    assert experts.stored_scores(runs.open_run(corrupt), 1, model, tests) is None
