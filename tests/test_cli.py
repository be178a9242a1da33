"""The command line end to end on a tiny config, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lifelong.__main__ import main

TINY = ["--set", "latent_dim=4", "--set", "hidden=32", "--set", "channels=8"]


def test_train_eval_end_to_end(tmp_path, capsys):
    out = tmp_path / "t"
    rc = main(
        [
            "train",
            "--model",
            "lmvae",
            "--tasks",
            "digits:classes=0-4,digits:classes=5-9",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
            *TINY,
        ]
    )
    assert rc == 0
    assert {p.name for p in out.iterdir()} >= {
        "manifest.json",
        "task-00.safetensors",
        "task-01.safetensors",
        "log.jsonl",
    }
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mse (row: after task k" in text and "forgetting_mse" in text
    assert main(["eval", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["matrices"]["mse"]) == 2


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "bad"
    for argv, needle in [
        (["--tasks", "nosuchdata"], "nosuchdata"),
        (["--tasks", "digits", "--set", "nope=1"], "unknown option 'nope'"),
        (["--tasks", "digits", "--set", "latent_dim=abc"], "not a valid int"),
        (["--tasks", "digits", "--model", "nosuch"], "unknown model 'nosuch'"),
        (["--tasks", "digits", "--device", "cuda"], "cuda"),
    ]:
        base = ["train", "--model", "lmvae", "--out", str(out), "--epochs", "1"]
        if "--model" in argv:
            base = ["train", "--out", str(out), "--epochs", "1"]
        proc = subprocess.run(
            [sys.executable, "-m", "lifelong", *base, *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert not out.exists()


def test_eval_of_a_broken_folder_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lifelong", "eval", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_datasets_and_models_listings(capsys):
    assert main(["datasets"]) == 0
    text = capsys.readouterr().out
    for name in ("digits", "glyphs", "shapes", "mnist", "fashion", "kmnist"):
        assert name in text
    assert main(["models"]) == 0
    assert "lmvae" in capsys.readouterr().out


# -- one line for every user mistake, and nothing written --------------------------------------

TRAIN = ["train", "--model", "lmvae", "--tasks", "digits:classes=0-1", "--device", "cpu", *TINY]


def _fails(argv, capsys) -> str:
    """Run the command in-process; it must fail with exactly one line, `error: ...`."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc not in (0, None) and len(err) == 1 and err[0].startswith("error: "), (rc, err)
    return err[0]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--batch-size", "0"], "argument --batch-size: must be >= 1, not 0"),
        (["--threads", "-1"], "argument --threads: must be >= 1, not -1"),
        (["--threads", "0"], "argument --threads: must be >= 1, not 0"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, not 0"),
        (["--epochs", "-1"], "argument --epochs: must be >= 1, not -1"),
        (["--epochs", "two"], "'two' is not a whole number"),
        (["--checkpoint-every", "-1"], "argument --checkpoint-every: must be >= 0, not -1"),
        (["--seed", "-1"], "argument --seed: must be between 0 and"),
        (["--amp", "fp8"], "invalid choice: 'fp8'"),
        (["--set", "hidden=0"], "option hidden must be at least 1, not 0"),
        (["--set", "latent_dim=-1"], "option latent_dim must be at least 1, not -1"),
        (["--set", "hidden=100000000"], "fit this machine"),
        (["--set", "hidden=1e8"], "option hidden: '1e8' is not a valid int"),
        (["--set", "image_shape=1x8x8"], "image_shape is set from the tasks"),
        (["--set", "lr=nan"], "option lr: 'nan' is not a valid float"),
        (["--set", "lr=-1"], "option lr must be a positive number"),
        (["--device", "garbage"], "unknown device 'garbage'"),
        (["--model", "garbage"], "unknown model 'garbage'"),
        (["--tasks", ""], "no tasks given"),
        (["--tasks", "digits,"], "empty task at position 2"),
    ],
)
def test_train_refuses_bad_options_in_one_line(tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    assert needle in _fails([*TRAIN, "--epochs", "1", *extra, "--out", str(out)], capsys)
    assert not out.exists()


def test_train_refuses_an_out_that_is_not_its_own(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    assert "is a file, not a folder" in _fails([*TRAIN, "--out", str(path)], capsys)
    assert "cannot write" in _fails([*TRAIN, "--out", str(path / "run")], capsys)
    mine = tmp_path / "mine"
    (mine / ".checkpoints").mkdir(parents=True)
    (mine / ".checkpoints" / "keep.txt").write_text("keep")
    (mine / "log.jsonl").write_text("mine")
    line = _fails([*TRAIN, "--out", str(mine)], capsys)
    assert "is a folder that is not a run" in line and "log.jsonl" in line
    assert "no manifest.json there" in _fails([*TRAIN, "--out", str(mine), "--resume"], capsys)
    assert (mine / "log.jsonl").read_text() == "mine"
    assert [p.name for p in (mine / ".checkpoints").iterdir()] == ["keep.txt"]


def test_eval_and_pretrain_refuse_bad_input_in_one_line(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    assert "is a file, not a run folder" in _fails(["eval", str(path)], capsys)
    assert "no manifest.json" in _fails(["eval", str(tmp_path)], capsys)
    assert "unknown metric 'garbage'" in _fails(
        ["eval", str(tmp_path), "--metrics", "garbage"], capsys
    )
    for flag, value in (("--k", "0"), ("--samples", "0"), ("--samples", "-5"), ("--threads", "0")):
        assert f"argument {flag}: must be >= 1" in _fails(
            ["eval", str(tmp_path), flag, value], capsys
        )
    assert "--only 'garbage' matches nothing" in _fails(["pretrain", "--only", "garbage"], capsys)
    assert "argument --threads" in _fails(["pretrain", "--threads", "0"], capsys)
    assert "is a file, not a folder" in _fails(["pretrain", "--out", str(path)], capsys)
    root = tmp_path / "zoo"
    assert "unknown device" in _fails(["pretrain", "--device", "tpu", "--out", str(root)], capsys)
    from lifelong.zoo import ZOO

    name = ZOO[0]["name"]
    (root / name).mkdir(parents=True)
    (root / name / "mine.txt").write_text("mine")
    line = _fails(["pretrain", "--only", name, "--out", str(root)], capsys)
    assert "exists and is not a run" in line
    assert sorted(p.name for p in root.rglob("*")) == [name, "mine.txt"]  # nothing trained


def test_pretrain_without_fashion_skips_its_runs_in_one_line(tmp_path, capsys, monkeypatch):
    """A full rebuild on a machine without dataset-fashion-mnist skips the Fashion runs, one
    line each; naming one is an error saying how to get the data; nothing is written."""
    import dataclasses

    from lifelong import zoo
    from lifelong.data.registry import REGISTRY

    absent = dataclasses.replace(REGISTRY["fashion"], default_path=str(tmp_path / "absent"))
    monkeypatch.setitem(REGISTRY, "fashion", absent)
    monkeypatch.setattr(zoo, "ZOO", [e for e in zoo.ZOO if "fashion" in e["name"]][:2])
    monkeypatch.setattr("lifelong.__main__._feature_classifier", lambda root, args: None)
    root = tmp_path / "zoo"
    assert main(["pretrain", "--out", str(root)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("skipping ") for line in err)
    assert "dataset-fashion-mnist" in err[0]
    assert not root.exists() or not any(p.is_dir() for p in root.iterdir())
    name = zoo.ZOO[0]["name"]
    line = _fails(["pretrain", "--only", name, "--out", str(root)], capsys)
    assert "dataset-fashion-mnist" in line


def test_ctrl_c_says_what_was_left(tmp_path, capsys, monkeypatch):
    import lifelong.data
    from lifelong.train import trainer

    out = tmp_path / "run"
    argv = [*TRAIN, "--epochs", "1", "--tasks", "digits:classes=0-1,digits:classes=2-3"]

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(lifelong.data, "load_task", interrupted)
    assert main([*argv, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted (no run was started)"
    assert not out.exists()
    monkeypatch.undo()
    real = trainer._train_task

    def second_task_interrupted(ctx, model, manifest, t, *rest):
        if t == 1:
            raise KeyboardInterrupt
        return real(ctx, model, manifest, t, *rest)

    monkeypatch.setattr(trainer, "_train_task", second_task_interrupted)
    assert main([*argv, "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: {out} resumes with --resume"
    )
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    assert main([*argv, "--out", str(out), "--resume"]) == 0


def test_an_unexpected_error_is_one_line_too(tmp_path, capsys, monkeypatch):
    from lifelong.train import trainer

    def broken(*a, **kw):
        return 1 / 0

    monkeypatch.setattr(trainer, "_run", broken)
    monkeypatch.delenv("LIFELONG_DEBUG", raising=False)
    line = _fails([*TRAIN, "--out", str(tmp_path / "run")], capsys)
    assert line.startswith("error: unexpected ZeroDivisionError: division by zero (a bug")
