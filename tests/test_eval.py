"""`python -m lifelong eval` and the model-level metrics behind it, on a tiny CLI-trained L-MVAE
run: values are written into manifest["eval"] and read back by a second eval; the shipped
feature classifier and its loader; the Frechet distance and disentanglement with models whose
answer is known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lifelong import classifier as fc
from lifelong import evaluation
from lifelong.__main__ import main
from lifelong.data import load_task
from lifelong.models import Capabilities
from lifelong.runs import open_run


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy of the shared tiny run (eval --write changes its manifest)."""
    dst = tmp_path / "tiny"
    shutil.copytree(tiny_run, dst)
    return dst


def _eval_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["eval", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_writes_the_manifest_and_a_second_eval_reads_it_back(run_copy, capsys, monkeypatch):
    names = "iwelbo,ssim,frechet,fitting,ari,transfer,forward,mig,task_shares"
    opts = ["--metrics", names, "--k", "4", "--samples", "64"]
    first = _eval_json(capsys, run_copy, *opts, "--write")
    stored = json.loads((run_copy / "manifest.json").read_text())["eval"]
    assert stored["format"] == "lifelong-eval/1"
    for name in ("iwelbo", "ssim", "frechet", "ari", "transfer", "forward"):
        assert stored["metrics"][name]["value"] == first["eval"][name]
    iw, ssim = first["eval"]["iwelbo"], first["eval"]["ssim"]
    assert len(iw) == 2 and len(iw[0]) == 2 and all(v < 0 for row in iw for v in row)
    assert all(0 < v <= 1 for row in ssim for v in row)
    fr = first["eval"]["frechet"]
    assert len(fr["seen"]) == 2 and len(fr["per_task"][1]) == 2 and fr["seen"][0] > 0
    assert np.array(first["eval"]["transfer"]).shape == (2, 2, 2)  # snapshots, experts, tasks
    fit = first["eval"]["fitting"]  # one seen task after task 0: no classifier to train
    assert fit["seen"][0] is None and 0 <= fit["seen"][1] <= 1 and len(fit["per_task"][1]) == 2
    shares = first["eval"]["task_shares"]
    assert np.array(shares["per_task"]).shape == (2, 2) and shares["probe_accuracy"] > 0.9
    fwd = first["eval"]["forward"]
    assert len(fwd["initial"]["mse"]) == 2 and fwd["forward_transfer_mse"] is not None
    # the untrained model reconstructs far worse than the trained one on task 0
    assert fwd["initial"]["mse"][0] > first["matrices"]["mse"][0][0]
    # no shapes task: MIG is skipped with a note, not a crash, and not stored
    assert "shapes" in first["eval_skipped"]["mig"] and "mig" not in stored["metrics"]

    # The second eval recomputes nothing: every computation is made to fail.
    def boom(*a, **k):
        raise AssertionError("recomputed")

    for fn in (
        "iwelbo_per_task",
        "ssim_per_task",
        "frechet_seen_and_per_task",
        "ari_per_task",
        "task_shares",
        "fitting_capacity",
    ):
        monkeypatch.setattr(evaluation, fn, boom)
    second = _eval_json(capsys, run_copy, *opts)
    for name in (
        "iwelbo",
        "ssim",
        "frechet",
        "fitting",
        "ari",
        "transfer",
        "forward",
        "task_shares",
    ):
        assert second["eval"][name] == first["eval"][name]
    # other parameters make a different key: the stored value is not reused
    monkeypatch.setenv("LIFELONG_DEBUG", "1")  # the CLI re-raises instead of one line
    with pytest.raises(AssertionError, match="recomputed"):
        main(["eval", str(run_copy), "--metrics", "iwelbo", "--k", "5", "--json"])
    monkeypatch.delenv("LIFELONG_DEBUG")
    # the plain eval still prints the forgetting matrices, and names what is stored
    capsys.readouterr()
    assert main(["eval", str(run_copy)]) == 0
    text = capsys.readouterr().out
    assert "mse (row: after task k" in text and "stored metrics: iwelbo" in text


def test_eval_errors_and_skips_are_one_line(run_copy, capsys, monkeypatch, tmp_path):
    assert main(["eval", str(run_copy), "--metrics", "iwelbo,fid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'fid'" in err[0] and "iwelbo" in err[0] and "dci" in err[0]
    monkeypatch.setattr(fc, "DEFAULT_PATH", tmp_path / "none.safetensors")
    assert main(["eval", str(run_copy), "--metrics", "frechet"]) == 2  # asked for: an error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain --only classifier" in err[0]
    out = _eval_json(capsys, run_copy, "--metrics", "all", "--k", "1", "--samples", "16")
    assert "not found" in out["eval_skipped"]["frechet"]  # within "all": skipped with a note
    assert "not found" in out["eval_skipped"]["task_shares"]
    assert "dci" in out["eval_skipped"] and "iwelbo" in out["eval"]
    assert "no shared and private codes (cpvae)" in out["eval_skipped"]["populations"]
    # a run still training is not written into (its trainer would drop the values)
    manifest = json.loads((run_copy / "manifest.json").read_text())
    (run_copy / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    assert main(["eval", str(run_copy), "--metrics", "ssim", "--write"]) == 2
    assert "still training" in capsys.readouterr().err


def test_iwelbo_of_a_trained_run_matches_its_own_elbo(tiny_run):
    """The generic bound (encode/decode, routed expert) at k = 1 is the family's own ELBO in
    expectation, and grows with k."""
    torch.manual_seed(0)
    model = open_run(tiny_run).load_model()
    x = load_task("digits:classes=0-4", "test").x[:64]
    from lifelong.likelihood import iwelbo

    with torch.no_grad():
        reps = x.repeat(8, 1, 1, 1)
        elbo = model.score(reps).mean().item()
        one = iwelbo(model, reps, k=1).mean().item()
        k20 = iwelbo(model, x, k=20).mean().item()
    assert abs(one - elbo) < 0.02 * abs(elbo)
    assert k20 > one


def test_shipped_classifier_loads_validates_and_recognises_digits(tmp_path):
    clf = fc.load_classifier()
    assert fc.DEFAULT_PATH.stat().st_size < 1_000_000
    assert clf.meta["format"] == fc.FORMAT and {"digits", "glyphs", "shapes"} <= set(
        clf.meta["datasets"]
    )
    test = load_task("digits", "test")
    with torch.no_grad():
        pred = clf(fc.prepare(test.x)).argmax(1)
    names = [clf.meta["classes"][i] for i in pred.tolist()]
    right = [n == f"digits/{test.classes[y]}" for n, y in zip(names, test.y.tolist(), strict=True)]
    assert np.mean(right) > 0.85
    assert clf.features(torch.rand(3, 3, 32, 32)).shape == (3, clf.meta["feature_dim"])
    # missing, corrupt, foreign: one-line ClassifierError naming the fix
    good = fc.DEFAULT_PATH.read_bytes()
    from safetensors.torch import save

    for name, data, needle in [
        ("missing", None, "not found"),
        ("cut", good[: len(good) // 2], "corrupt"),
        ("foreign", save({"w": torch.zeros(2)}), "not a lifelong-classifier/1"),
    ]:
        path = tmp_path / f"{name}.safetensors"
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(fc.ClassifierError, match=needle) as exc:
            fc.load_classifier(path)
        assert "\n" not in str(exc.value) and "pretrain --only classifier" in str(exc.value)


@pytest.mark.skipif(not fc.FASHION_PATH.is_file(), reason="no Fashion-MNIST classifier shipped")
def test_fashion_classifier_scores_fashion_runs_and_recognises_clothes():
    """Fashion-MNIST runs get features of a classifier of clothes (App. 9.10: the data at
    hand); a mixed or embedded sequence keeps the embedded one."""
    assert fc.classifier_path_for(["fashion:classes=0-1", "fashion:classes=2-3"]) == fc.FASHION_PATH
    assert fc.classifier_path_for(["digits", "fashion"]) == fc.DEFAULT_PATH
    assert fc.classifier_path_for(["digits", "glyphs:invert"]) == fc.DEFAULT_PATH
    assert fc.classifier_path_for(["nonsense:::"]) == fc.DEFAULT_PATH
    clf = fc.load_classifier(fc.FASHION_PATH)
    assert clf.meta["datasets"] == ["fashion"] and len(clf.meta["classes"]) == 10
    assert clf.meta["test_accuracy"] > 0.85
    try:
        test = load_task("fashion:classes=7-9", "test")  # sneaker, bag, ankle boot
    except ValueError:
        pytest.skip("dataset-fashion-mnist not installed")
    with torch.no_grad():
        pred = clf(fc.prepare(test.x[:600])).argmax(1)
    assert (pred == test.y[:600]).float().mean() > 0.85
    # the embedded classifier calls clothes its own classes: its features are not for them
    emb = fc.load_classifier()
    assert not any(emb.meta["classes"][i].startswith("fashion") for i in range(3))


class Replay:
    """A stand-in 'model' whose samples are given images: real held-out images (a perfect
    generator), or noise."""

    capabilities = Capabilities()

    def __init__(self, pools):
        self.pools = pools

    def sample(self, n, task=None, expert=None):
        return self.pools[task][:n]


def test_frechet_of_model_ranks_real_over_blurred_over_noise(tiny_run):
    clf = fc.load_classifier()
    specs = ("digits:classes=0-4", "digits:classes=5-9")
    tests = [load_task(s, "test") for s in specs]
    trains = [load_task(s, "train").x for s in specs]
    real = evaluation.frechet_of_model(Replay(trains), tests, clf)
    blurred = [torch.nn.functional.avg_pool2d(x, 5, 1, 2) for x in trains]  # a blurry VAE
    blurry = evaluation.frechet_of_model(Replay(blurred), tests, clf)
    noise = evaluation.frechet_of_model(Replay([torch.rand(500, 1, 28, 28)] * 2), tests, clf)
    # samples of only the first task's digits, judged on both tasks: a forgetting model
    forgot = evaluation.frechet_of_model(Replay([trains[0], trains[0]]), tests, clf)
    assert real < 5 and real < blurry < noise and real < forgot
    per = evaluation.frechet_per_task(Replay([trains[0], trains[0]]), tests, clf)
    assert per[0] < 5 < per[1]  # task 1 is the forgotten one
    # the tiny L-MVAE run (one epoch): a finite distance from its own samples
    model = open_run(tiny_run).load_model()
    assert 0 < evaluation.frechet_of_model(model, tests, clf, n=64) < float("inf")


def test_task_shares_tell_which_task_the_samples_look_like():
    """The task probe: real images of each task are put back in their task; a model whose
    samples for task 1 are task 0's images (it forgot task 1, or its code generates the wrong
    task) gets share ~0 there; one task alone cannot be probed."""
    clf = fc.load_classifier()
    specs = ("digits:classes=0-4", "digits:classes=5-9")
    trains = [load_task(s, "train") for s in specs]
    tests = [load_task(s, "test") for s in specs]
    probe = evaluation.TaskProbe(trains, clf)
    assert probe.accuracy(tests) > 0.9
    pools = [d.x[:200] for d in tests]
    assert min(evaluation.task_shares(Replay(pools), tests, probe, n=200)) > 0.85
    forgot = evaluation.task_shares(Replay([pools[0], pools[0]]), tests, probe, n=200)
    assert forgot[0] > 0.85 and forgot[1] < 0.15
    with pytest.raises(evaluation.Unsupported, match="two tasks"):
        evaluation.TaskProbe(trains[:1], clf)


def test_fitting_capacity_is_high_for_real_samples_and_chance_for_a_task_blind_model():
    """Lesort et al.'s Fitting Capacity with the task as label: a model whose samples of each
    task are that task's real images trains a classifier that gets the real test images
    right; one that generates the same images for every task (it forgot, or is task-blind)
    gets about one in two; one seen task has a single label: undefined."""
    clf = fc.load_classifier()
    specs = ("digits:classes=0-4", "digits:classes=5-9")
    trains = [load_task(s, "train").x for s in specs]
    tests = [load_task(s, "test") for s in specs]
    seen, per = evaluation.fitting_capacity(Replay(trains), tests, clf, 2, n=200)
    assert seen > 0.85 and min(per) > 0.8
    blind, _ = evaluation.fitting_capacity(Replay([trains[0], trains[0]]), tests, clf, 2, n=200)
    assert 0.3 < blind < 0.7
    assert evaluation.fitting_capacity(Replay(trains), tests, clf, 1) == (None, [None, None])


class Moments:
    """An 'encoder' whose codes are image moments: ink mass and the centroid (x, y)."""

    family = "moments"
    device = torch.device("cpu")

    def experts(self):
        return []

    def encode(self, x):
        w = x[:, 0]
        mass = w.sum((1, 2))
        grid = torch.arange(w.shape[-1], dtype=torch.float32)
        cx = (w.sum(1) * grid).sum(1) / mass
        cy = (w.sum(2) * grid).sum(1) / mass
        return {"z": {"mu": torch.stack([mass, cx, cy], 1), "logvar": torch.zeros(len(x), 3)}}


def test_disentanglement_of_moment_codes_on_shapes():
    data = load_task("shapes", "test")
    res = evaluation.disentanglement(Moments(), data, 0, n=1000)
    names = res["factor_names"]
    mig = dict(zip(names, res["mig"]["per_factor"], strict=True))
    # the centroid tells x and y (up to the shape's extent) and nothing about orientation;
    # 1000 images bias a 20x20-bin MI by ~0.2 nats, so gaps stay well below 1
    assert mig["x"] > 0.25 and mig["y"] > 0.25 and mig["orientation"] < 0.05
    info = dict(zip(names, res["dci"]["informativeness_per_factor"], strict=True))
    assert info["x"] > 0.8 and info["y"] > 0.8 and info["scale"] > 0.7 and info["orientation"] < 0.1
    top = np.array(res["dci"]["importance"]).argmax(0)  # most important code per factor
    assert [top[names.index(f)] for f in ("scale", "x", "y")] == [0, 1, 2]


def test_eval_write_adds_compare_experts_table_to_older_runs(tiny_run, tmp_path):
    """A mixture trained before the trainer stored Compare experts' table gets it from `eval
    --write`, equal to what the trainer stores; a second --write adds nothing."""
    from lifelong.evaluation import EXPERT_TABLE

    out = tmp_path / "old"
    shutil.copytree(tiny_run, out)
    stored = {t: open_run(out).extra(EXPERT_TABLE, t) for t in open_run(out).snapshots}
    assert all(v is not None for v in stored.values())
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["extras"].pop(EXPERT_TABLE)
    (out / "manifest.json").write_text(json.dumps(manifest))
    for p in out.glob(f"{EXPERT_TABLE}-*.safetensors"):
        p.unlink()
    assert open_run(out).extra(EXPERT_TABLE, 0) is None
    assert main(["eval", str(out), "--write"]) == 0
    run = open_run(out)
    for t, table in stored.items():
        again = run.extra(EXPERT_TABLE, t)
        assert torch.equal(again["dataset"], table["dataset"])
    before = (out / "manifest.json").read_bytes()
    assert main(["eval", str(out), "--write"]) == 0
    assert (out / "manifest.json").read_bytes() == before
