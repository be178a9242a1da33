#!/usr/bin/env bash
# The checks that need a CUDA device, in one short run for a lent GPU machine (README: GPU):
# the gpu-marked tests (the app's batch work on CUDA among them), bench_device.py (one image's
# decode and batch work, cpu against cuda), then bench_train.py on CUDA with the mixtures both
# looped and batched (vmap). Figures and logs go to $OUT (the device tool brings that folder back).
#   bash bench/device_check.sh        # ~5 min on one H100/H200
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
PY=$(command -v python3 || command -v python)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/gpu.txt"
timeout 330 "$PY" -m pytest -m gpu tests/gpu -p no:warnings -p no:cacheprovider -rA 2>&1 | tee "$OUT/tests.txt"
timeout 120 "$PY" bench/bench_device.py 2>&1 | tee "$OUT/bench_device.txt"
FAMS="vae;ewc;lmvae;lmvae:expert_batching=vmap;mvae;mvae:expert_batching=loop;lgm;cpvae;infogan"
timeout 200 "$PY" bench/bench_train.py --device cuda --steps 64 --families "$FAMS" 2>&1 | tee "$OUT/bench_train_cuda.txt"
