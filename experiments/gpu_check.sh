#!/usr/bin/env bash
# One-command device check (GPU machine holding only the repository, wheels in .whl, and a small
# CIFAR-10 subset in .device/cifar_subset.npz made by experiments/make_cifar_subset.py):
#   bash experiments/gpu_check.sh [OUT_DIR]
set -uo pipefail
OUT=${1:-${OUT:-/tmp/gpu_out}}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, ntkfeat.compat as c; nt=c.neural_tangents(); print('jax', jax.__version__, jax.devices())"
timeout 90 python3 -m pytest -q -x tests/test_compat.py 2>&1 | tail -2
S=${SIZES-16,32,64}
python3 -m experiments.bench_cntk --data .device/cifar_subset.npz --dims ${DIMS:-4096,16384} \
  --methods ${METHODS:-sketch,sketch-full,sketch-plain} --error-keys ${KEYS:-4} \
  --images ${IMAGES:-4096} --batch ${BATCH:-4096:128,16384:32} --exact 12 --exact-batch 12 \
  ${S:+--sizes $S} --size-dim 4096 --size-images 1024 --out "$OUT/bench_cntk.json" 2>&1 | tee "$OUT/bench_cntk.log"
