#!/usr/bin/env bash
# The accelerator check: run on a GPU (or TPU) host from the repository root, with the
# package installed for it (pip install ".[cuda,test]"). Writes to $OUT (default
# runs/accelerator_check):
#   devices.txt                     what JAX sees
#   tests-default.log, tests-highest.log
#                                   the model tests at the platform's default float32
#                                   matmul precision (TF32 on recent NVIDIA GPUs) and
#                                   at full float32
#   bench-<variant>.json / .log     the paper-CelebA training step: float32, bfloat16,
#                                   and float32 with every RNVP block scanned
#                                   (scan_min_layers 1: compile time); compile seconds,
#                                   step times, fractions of the measured TF32 and bf16
#                                   peaks; with AUTHORS_CODE=<their code folder> (and torch
#                                   in $PYTHON) the authors' step on the same GPU
#   profile/paper-celeba/           a jax.profiler trace of the float32 step, kernels
#                                   scoped by level and layer
#   bench-accel-cb-<on|off>.json    paper-CelebA as :accel runs it (bfloat16, every loop a
#                                   scan) with XLA:GPU command buffers for loops (the
#                                   default, jit_steps.GPU_COMMAND_BUFFERS) and without:
#                                   the faster becomes the default
#   compile-time.json               benchmarks/compile_time.py on this device: init,
#                                   train and eval compile seconds cold and the cached
#                                   executable's load seconds, for celeba:accel
#   gpu-target.txtpb                this GPU's own target description (commit it under
#                                   benchmarks/ and compile for it with
#                                   compile_time.py --targets gpu:<that file>)
#   summary.json                    every bench row in one file
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/accelerator_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 RGFLOW_CPU_TUNING=0
"$PY" -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())" \
  | tee "$OUT/devices.txt"
status=0
MODEL_TESTS="tests/test_rgflow.py tests/test_coupling.py tests/test_coupling_fast.py tests/test_registry.py tests/test_priors_pixels.py tests/test_inception.py"
for precision in default highest; do
  JAX_DEFAULT_MATMUL_PRECISION=$precision timeout 240 "$PY" -m pytest -q -p no:cacheprovider \
    $MODEL_TESTS 2>&1 | tee "$OUT/tests-$precision.log" || status=1
done
AUTHORS=()
if [ -n "${AUTHORS_CODE:-}" ]; then AUTHORS=(--authors-code "$AUTHORS_CODE" --authors-python "$PY"); fi
bench() {  # name, then step_time.py's options
  local name=$1; shift
  timeout 300 "$PY" benchmarks/step_time.py --configs paper-celeba --steps 5 --matmul_n 4096 \
    --json "$OUT/bench-$name.json" "$@" 2>&1 | tee "$OUT/bench-$name.log" || status=1
}
bench float32 --profile "$OUT/profile" "${AUTHORS[@]}"
bench bfloat16 --matmul_dtype bfloat16
bench float32-scan --scan_min_layers 1
bench accel-cb-on --matmul_dtype bfloat16 --scan_min_layers 1 --command_buffers on
bench accel-cb-off --matmul_dtype bfloat16 --scan_min_layers 1 --command_buffers off
timeout 600 "$PY" benchmarks/compile_time.py --targets local --configs celeba:accel \
  --programs init,train,eval --json "$OUT/compile-time.json" 2>&1 \
  | tee "$OUT/compile-time.log" || status=1
"$PY" - "$OUT" <<'PYEOF' || status=1
import pathlib, sys
import jax
if jax.default_backend() == "gpu":
  from jax._src.lib import xla_client  # as JAX's own deviceless-compile test reads it
  config = xla_client.get_topology_for_devices(jax.devices()).target_config
  pathlib.Path(sys.argv[1], "gpu-target.txtpb").write_text(
      config if isinstance(config, str) else config.decode())
PYEOF
"$PY" - "$OUT" <<'PYEOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {p.stem.removeprefix("bench-"): json.loads(p.read_text())
        for p in sorted(out.glob("bench-*.json"))}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
PYEOF
exit $status
