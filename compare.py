"""Compare trained runs side by side: the paper's tables and figures.

    python compare.py --out runs/compare_msds1 runs/msds1_cpu runs/msds1_cpu_gaussian \
        runs/msds1_cpu_realnvp

Each argument is a run folder written by train.py (its config.json and checkpoints
are read). Writes compare.json, compare.md (test BPD and MSDS semantic scores, Table
F1's inpainting PSNR, receptive-field statistics) and the figures (samples.png,
inpaint.png, <run>_receptive_fields.png, <run>_rf_strengths.png) to --out.
"""

import sys

from absl import app, flags

_OUT = flags.DEFINE_string("out", "runs/compare", "Folder for the tables and figures.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_DRAWS = flags.DEFINE_integer("draws", 2, "Dequantisation draws for test bits/dim.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", None, "Test bits/dim on the first N images.",
                                   lower_bound=1)
_SAMPLES = flags.DEFINE_integer("samples", 256, "Samples (and real images) for the "
                                "semantic scores.")
_INPAINT_IMAGES = flags.DEFINE_integer("inpaint_images", 4, "Test images to inpaint.")
_INPAINT_STARTS = flags.DEFINE_integer("inpaint_starts", 200, "Random starts per inpainting.")
_INPAINT_STEPS = flags.DEFINE_integer("inpaint_steps", 300, "Adam steps per inpainting.")
_RF_SAMPLES = flags.DEFINE_integer("rf_samples", 8, "Prior samples per receptive field.")


def main(argv):
  workdirs = argv[1:]
  from rgflow_jax import cli
  cli.quiet_libraries()
  if not workdirs:
    sys.exit("error: name the run folders to compare, e.g. "
             "python compare.py --out runs/cmp runs/a runs/b")
  from rgflow_jax import compare
  from rgflow_jax.data import DataError
  from rgflow_jax.training import TrainingError
  for name, value in (("draws", _DRAWS.value), ("samples", _SAMPLES.value),
                      ("inpaint_images", _INPAINT_IMAGES.value),
                      ("inpaint_starts", _INPAINT_STARTS.value),
                      ("rf_samples", _RF_SAMPLES.value)):
    if value < 1:
      sys.exit(f"error: --{name} must be >= 1, got {value}")
  try:
    compare.check_workdirs(workdirs)
    result = compare.compare(workdirs, _OUT.value, _DRAWS.value, _MAX_IMAGES.value,
                             _SAMPLES.value, _INPAINT_IMAGES.value, _INPAINT_STARTS.value,
                             _INPAINT_STEPS.value, _RF_SAMPLES.value, _CHECKPOINT.value)
  except (DataError, TrainingError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(compare.tables_markdown(result))
  print(f"wrote {_OUT.value}/compare.json, compare.md and the figures")


if __name__ == "__main__":
  from rgflow_jax import cli
  app.run(main, flags_parser=cli.parse_flags)
