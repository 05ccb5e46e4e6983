#!/usr/bin/env bash
# The accelerator check: run on a GPU (or TPU) host from the repository root, with the
# package installed for it (pip install ".[cuda,test]"). Writes its logs to $OUT
# (default runs/accelerator_check):
#   devices.txt                     what JAX sees
#   tests-default.log, tests-highest.log
#                                   the model tests at the platform's default float32
#                                   matmul precision (TF32 on recent NVIDIA GPUs) and
#                                   at full float32
#   bench.json, bench.log           the training-step benchmark at tiny and paper-CelebA
#                                   size, float32 and bfloat16 matmuls
# About 6-8 minutes on one H100-class GPU (mostly compilation).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/accelerator_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 RGFLOW_CPU_TUNING=0
"$PY" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())" \
  | tee "$OUT/devices.txt"
status=0
MODEL_TESTS="tests/test_model.py tests/test_coupling.py tests/test_model_registry.py tests/test_priors_pixels.py tests/test_geometry.py"
for precision in default highest; do
  JAX_DEFAULT_MATMUL_PRECISION=$precision timeout 240 "$PY" -m pytest -q -p no:cacheprovider \
    $MODEL_TESTS 2>&1 | tee "$OUT/tests-$precision.log" || status=1
done
for dtype in float32 bfloat16; do
  timeout 300 "$PY" benchmarks/step_time.py --configs tiny,paper-celeba --steps 5 \
    --matmul_dtype $dtype --json "$OUT/bench-$dtype.json" 2>&1 | tee "$OUT/bench-$dtype.log" \
    || status=1
done
exit $status
