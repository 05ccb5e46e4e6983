"""``rgflow-compare`` (or ``python -m rgflow_jax.cli.compare``, or the repository's
``python compare.py``): trained runs side by side, as the paper's tables and figures."""

from __future__ import annotations

import sys

from absl import flags

from rgflow_jax import cli

USAGE = """Compare trained runs side by side: the paper's tables and figures.

  rgflow-compare --out runs/compare_msds1 runs/msds1-cpu runs/msds1-cpu,gaussian \\
      runs/msds1-cpu,realnvp [--config.eval.inpaint.steps=100 ...]

Each argument is a run folder written by rgflow-train. Each run is evaluated as
rgflow-eval evaluates it: its own config.json, then the --config.eval.* settings given
here (shared by every run), into <out>/<run>/ (eval.json, receptive fields, samples,
inpainting). Then compare writes compare.json, compare.md (test bits/dim, FID with
--config.eval.fid.weights, MSDS semantic scores, Table F1's inpainting PSNR and
Inception-PSNR, receptive-field statistics) and the figures side by side (samples.png,
inpaint.png) to --out.
"""

OLD_FLAGS = ("checkpoint", "draws", "max_images", "samples", "inpaint_images",
             "inpaint_starts", "inpaint_steps", "rf_samples", "inception_weights",
             "fid_images")


def _define_flags():
  from rgflow_jax.configs import base  # noqa: PLC0415
  flags.DEFINE_string("out", "runs/compare", "Folder for the tables and figures.")
  cli.define_config_flag(base.__file__)
  cli.define_deprecated_eval_flags(OLD_FLAGS)


def main(argv):
  workdirs = argv[1:]
  cli.quiet_libraries()
  if not workdirs:
    sys.exit("error: name the run folders to compare, e.g. "
             "rgflow-compare --out runs/cmp runs/a runs/b")
  if flags.FLAGS["config"].present:
    sys.exit("error: compare evaluates each run with its own config: give only "
             "--config.eval.* settings, not --config")
  from rgflow_jax.core.errors import RGFlowError  # noqa: PLC0415
  from rgflow_jax.run import compare  # noqa: PLC0415
  f = flags.FLAGS
  try:
    overrides = cli.eval_overrides(OLD_FLAGS)
    compare.check_workdirs(workdirs)
    result = compare.compare(workdirs, f.out, overrides)
  except (RGFlowError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(compare.tables_markdown(result))
  print(f"wrote {f.out}/compare.json, compare.md and the figures")


def run():
  cli.run_program(main, _define_flags, USAGE)


if __name__ == "__main__":
  run()
