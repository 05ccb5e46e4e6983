"""``rgflow-compare`` (or ``python -m rgflow_jax.cli.compare``, or the repository's
``python compare.py``): trained runs side by side, as the paper's tables and figures."""

from __future__ import annotations

import sys

from absl import flags

from rgflow_jax import cli

USAGE = """Compare trained runs side by side: the paper's tables and figures.

  rgflow-compare --out runs/compare_msds1 runs/msds1-cpu runs/msds1-cpu,gaussian \\
      runs/msds1-cpu,realnvp

Each argument is a run folder written by rgflow-train (its config.json and checkpoints
are read). Writes compare.json, compare.md (test bits/dim, FID with
--inception_weights, MSDS semantic scores, Table F1's inpainting PSNR and
Inception-PSNR, receptive-field statistics) and the figures (samples.png,
inpaint.png, <run>_receptive_fields.png, <run>_rf_strengths.png) to --out.
"""


def _define_flags():
  flags.DEFINE_string("out", "runs/compare", "Folder for the tables and figures.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
  flags.DEFINE_integer("draws", 2, "Dequantisation draws for test bits/dim.", lower_bound=1)
  flags.DEFINE_integer("max_images", None, "Test bits/dim on the first N images.",
                       lower_bound=1)
  flags.DEFINE_integer("samples", 256, "Samples (and real images) for the semantic scores.",
                       lower_bound=1)
  flags.DEFINE_integer("inpaint_images", 4, "Test images to inpaint.", lower_bound=1)
  flags.DEFINE_integer("inpaint_starts", 200, "Random starts per inpainting.", lower_bound=1)
  flags.DEFINE_integer("inpaint_steps", 300, "Adam steps per inpainting.", lower_bound=0)
  flags.DEFINE_integer("rf_samples", 8, "Prior samples per receptive field.", lower_bound=1)
  flags.DEFINE_string("inception_weights", None,
                      "FID Inception weights (pytorch-fid's .pth or its .npz, or 'download'): "
                      "adds FID and Inception-PSNR.")
  flags.DEFINE_integer("fid_images", 10_000, "Samples (and test images) for FID.",
                       lower_bound=2)


def main(argv):
  workdirs = argv[1:]
  cli.quiet_libraries()
  if not workdirs:
    sys.exit("error: name the run folders to compare, e.g. "
             "rgflow-compare --out runs/cmp runs/a runs/b")
  from rgflow_jax.data import DataError  # noqa: PLC0415
  from rgflow_jax.run import compare  # noqa: PLC0415
  from rgflow_jax.run.run_config import TrainingError  # noqa: PLC0415
  f = flags.FLAGS
  try:
    compare.check_workdirs(workdirs)
    result = compare.compare(workdirs, f.out, f.draws, f.max_images, f.samples,
                             f.inpaint_images, f.inpaint_starts, f.inpaint_steps,
                             f.rf_samples, f.checkpoint,
                             inception_weights=f.inception_weights, fid_images=f.fid_images)
  except (DataError, TrainingError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(compare.tables_markdown(result))
  print(f"wrote {f.out}/compare.json, compare.md and the figures")


def run():
  cli.run_program(main, _define_flags, USAGE)


if __name__ == "__main__":
  run()
