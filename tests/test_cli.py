"""The command line end to end on a tiny config, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

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
