#!/usr/bin/env bash
# Train the six CPU-sized models of the paper's MSDS comparisons (Table B1, Fig. B2,
# App. E on images): RG-Flow + Laplace, RG-Flow + Gaussian and Real NVP (same
# parameter count) on MSDS1 and MSDS2. Fixed step counts (no time limit), so the
# results do not depend on how busy the machine is. Usage:
#   scripts/train_comparisons_cpu.sh [RUNS_DIR]      (default runs/paper-cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/paper-cpu}
py=${PYTHON:-python}
for data in msds1 msds2; do
  for variant in cpu cpu,gaussian cpu,realnvp; do
    name=${data}_${variant//,/_}
    $py train.py --config "configs/${data}.py:${variant}" --workdir "${runs}/${name}" \
      --config.time_limit_s=0 --config.progress=False
  done
done
