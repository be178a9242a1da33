"""What only a CUDA device can check (skipped without one; CI has none): every family trains on
CUDA into a run that opens on a CPU, bf16 autocast, resume from a mid-task checkpoint, batched
(vmap) experts on CUDA keeping frozen experts bit-identical, and torchrun over nccl.

Run on a GPU machine with `python -m pytest -m gpu tests/gpu` (bench/device_check.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lifelong import data as ldata
from lifelong import runs
from lifelong.models import REGISTRY
from lifelong.train import TrainArgs, train
from lifelong.train import checkpoint as ckpt_mod
from tests.conftest import TINY_NETS as TINY
from tests.conftest import TINY_TASKS as TASKS
from tests.conftest import StopAt, tiny_args

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]


def _args(out, **kw) -> TrainArgs:
    return tiny_args(out, **{"epochs": 2, "device": "cuda", "threads": None, "map_points": 0, **kw})


@pytest.mark.parametrize("family", sorted(REGISTRY))
def test_every_family_trains_on_cuda_into_a_run_that_opens_on_cpu(tmp_path, family):
    out = train(_args(tmp_path / family, model=family), callbacks=[])
    run = runs.open_run(out)
    assert run.manifest["device"].startswith("cuda")
    cpu, gpu = run.load_model(), run.load_model(device="cuda")
    assert all(p.device.type == "cpu" for p in cpu.parameters())
    x = ldata.load_task(TASKS[0], "test", 0).x[:16]
    with torch.no_grad():
        a, b = cpu.reconstruct(x), gpu.reconstruct(x.cuda()).cpu()
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-3)


def test_amp_bf16_on_cuda_trains_with_finite_metrics(tmp_path):
    out = train(_args(tmp_path / "amp", amp="bf16"), callbacks=[])
    run = runs.open_run(out)
    assert run.manifest["train"]["amp"] == "bf16"
    mse = [v for row in run.metric("mse") for v in row if v is not None]
    assert mse and all(0 <= v < 1 for v in mse)


def test_resume_on_cuda_continues_the_interrupted_run(tmp_path):
    """CUDA kernels may be nondeterministic (atomics in convolution backward), so the resumed
    run is compared with the uninterrupted one up to float noise, not bit for bit."""
    ref = train(_args(tmp_path / "ref"), callbacks=[])
    out = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        train(_args(out), callbacks=[StopAt(1, 1)])
    listed = ckpt_mod.listed(out)
    assert listed and "rng/cuda" in ckpt_mod.read(listed[-1]).tensors
    train(_args(out, resume=True), callbacks=[])
    a, b = runs.open_run(out), runs.open_run(ref)
    assert a.events == b.events
    sa, sb = a.state(1), b.state(1)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-3, rtol=1e-2), k


def test_vmapped_experts_on_cuda_equal_the_loop_and_keep_frozen_experts(tmp_path):
    tasks = ["digits:classes=0-2", "digits:classes=3-5", "digits:classes=6-9"]
    overrides = {**TINY, "expert_batching": "vmap"}
    out = train(_args(tmp_path / "vmap", tasks=tasks, overrides=overrides), callbacks=[])
    run = runs.open_run(out)
    model = run.load_model(device="cuda")
    j = model.task_experts()[0]
    s0, s2 = run.state(0), run.state(2)
    keys = [k for k in s0 if k.startswith(f"experts_.{j}.")]
    assert keys and all(torch.equal(s0[k], s2[k]) for k in keys)
    x = ldata.load_task(tasks[1], "test", 0).x[:64].cuda()
    with torch.no_grad():
        model.config.expert_batching = "vmap"
        batched = model.expert_elbos(x, sample=False)
        model.config.expert_batching = "loop"
        loop = model.expert_elbos(x, sample=False)
    assert torch.allclose(batched, loop, rtol=1e-4, atol=1e-2)


def test_torchrun_over_nccl_writes_a_complete_run(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd += ["-m", "lifelong", "train", "--model", "lmvae", "--tasks", ",".join(TASKS)]
    cmd += ["--epochs", "2", "--batch-size", "64", "--device", "cuda", "--out", str(out)]
    for k, v in TINY.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = runs.open_run(out)
    assert run.snapshots == [0, 1]
    assert run.manifest["train"]["world_size"] == 1
