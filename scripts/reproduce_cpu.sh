#!/usr/bin/env bash
# The paper's comparisons at CPU size (docs/reproducing.md):
#  1. train RG-Flow + Laplace, RG-Flow + Gaussian and Real NVP (same parameter count)
#     on MSDS1 and MSDS2 (Table B1, Fig. B2), fixed step counts and no time limit, so
#     the results do not depend on how busy the machine is;
#  2. compare.py per data set: test BPD, semantic scores, inpainting PSNR (Table F1),
#     receptive fields (Fig. 5c / C1);
#  3. the pinwheel (App. E, Fig. E1).
# Usage: scripts/reproduce_cpu.sh [RUNS_DIR]   (default runs/paper-cpu; PYTHON=... to
# pick the interpreter, e.g. PYTHON=.venv/bin/python). Finished runs are not retrained.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/paper-cpu}
py=${PYTHON:-python}
for data in msds1 msds2; do
  dirs=()
  for variant in cpu cpu,gaussian cpu,realnvp; do
    dir="${runs}/${data}_${variant//,/_}"
    $py train.py --config "configs/${data}.py:${variant}" --workdir "$dir" \
      --config.train.time_limit_s=0 --config.progress=False
    dirs+=("$dir")
  done
  $py compare.py --out "${runs}/compare_${data}" --config.eval.bpd.draws=2 \
    --config.eval.semantic.samples=1000 --config.eval.inpaint.images=8 \
    --config.eval.inpaint.starts=200 --config.eval.inpaint.steps=300 \
    --config.eval.rf.samples=8 "${dirs[@]}"
done
$py -m experiments.pinwheel --workdir "${runs}/pinwheel"
