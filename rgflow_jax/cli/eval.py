"""``rgflow-eval`` (or ``python -m rgflow_jax.cli.eval``, or the repository's
``python eval.py``): evaluate a trained run; one summary line per mode on stdout, every
number in ``<workdir>/eval/eval.json`` (``--json`` prints it too), figures beside it."""

from __future__ import annotations

import json
import sys

from absl import flags

from rgflow_jax import cli

USAGE = """Evaluate a trained run: test bits/dim and the paper's figures.

  rgflow-eval --workdir runs/msds1-cpu [--mode all] [--quick] [--json]

Without --config the run's own (its config.json) is used (the flag below says what
--config takes). A --config must keep the run's model and data: a different model or data set is
refused.
Modes (--mode, comma-separated): {modes}, or all (fid only with --inception_weights).
Writes <workdir>/eval/eval.json and the figures (PNG, GIF) beside it.
"""


# --quick: make demo's settings for a CPU.
QUICK = {"draws": 2, "inpaint_images": 2, "inpaint_starts": 100}


def _define_flags():
  from rgflow_jax.run.evaluation import MODES  # noqa: PLC0415
  cli.define_config_flag()
  flags.DEFINE_string("workdir", None, "Run folder with checkpoints (local or gs://).")
  flags.DEFINE_string("mode", "all", f"{', '.join(MODES)} or all (comma-separated).")
  flags.DEFINE_string("images", None, ".npz of uint8 images (N, H, W, C) for bpd.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
  flags.DEFINE_boolean("quick", False, "The CPU-sized settings that make demo uses: "
                       "--draws 2 --inpaint_images 2 --inpaint_starts 100 (minutes on a "
                       "2-core CPU for --mode all, instead of about ten).")
  flags.DEFINE_integer("draws", 4, "Dequantisation draws for bpd.", lower_bound=1)
  flags.DEFINE_integer("max_images", None, "Evaluate bpd on the first N images.",
                       lower_bound=1)
  flags.DEFINE_integer("inpaint_images", 4, "Test images to inpaint.", lower_bound=1)
  flags.DEFINE_integer("inpaint_starts", 200, "Random starts per inpainting.",
                       lower_bound=1)
  flags.DEFINE_integer("inpaint_steps", 300, "Adam steps per inpainting.", lower_bound=0)
  flags.DEFINE_string("inception_weights", None,
                      "FID Inception weights: pytorch-fid's .pth (needs torch) or its .npz, "
                      "or 'download' (fetched once to ~/.cache/rgflow_jax). Enables --mode "
                      "fid and Inception-PSNR in inpaint.")
  flags.DEFINE_integer("fid_images", 10_000, "Samples (and test images) for FID.",
                       lower_bound=2)
  flags.DEFINE_float("fid_temperature", 1.0, "Sampling temperature for FID.", lower_bound=0.0)
  flags.DEFINE_boolean("json", False, "Also print eval.json's content on stdout.")
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  cli.quiet_libraries()
  from rgflow_jax.data import DataError  # noqa: PLC0415
  from rgflow_jax.run.evaluation import evaluate, summary_lines  # noqa: PLC0415
  from rgflow_jax.run import run_config  # noqa: PLC0415
  from rgflow_jax.run.run_config import TrainingError  # noqa: PLC0415
  f = flags.FLAGS
  try:
    config = (cli.load_config(f["config"]) if f["config"].value is not None
              else run_config.saved_config(f.workdir))
    quick = QUICK if f.quick else {}
    results = evaluate(config, f.workdir, f.mode.split(","),
                       f.images, f.checkpoint, quick.get("draws", f.draws), f.max_images,
                       inpaint_images=quick.get("inpaint_images", f.inpaint_images),
                       inpaint_starts=quick.get("inpaint_starts", f.inpaint_starts),
                       inpaint_steps=f.inpaint_steps, inception_weights=f.inception_weights,
                       fid_images=f.fid_images, fid_temperature=f.fid_temperature,
                       on_mode=lambda line: print(line, flush=True))
  except (DataError, TrainingError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  if f.json:
    print(json.dumps(results, indent=1))
  print(summary_lines(results)[-1])  # the mode lines were printed as each ended


def run():
  from rgflow_jax.run import evaluation  # noqa: PLC0415
  usage = USAGE.format(modes=", ".join(evaluation.MODES))
  cli.run_program(main, _define_flags, usage, tune_cpu=True)


if __name__ == "__main__":
  run()
