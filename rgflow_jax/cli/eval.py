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
      [--config.eval.inpaint.steps=100 ...]

Without --config the run's own (its config.json) is used, with the --config.KEY=VALUE
overrides given (the eval section says what each mode does: --config.eval.bpd.draws,
--config.eval.inpaint.steps, --config.eval.fid.weights, ...; --help lists them). A
--config must keep the run's model and data: a different model or data set is refused.
Modes (--mode, comma-separated): {modes}, or all (fid only with
--config.eval.fid.weights, semantic only on MSDS).
Writes <workdir>/eval/eval.json and the figures (PNG, GIF) beside it.

Config keys and defaults:
{keys}
"""


# --quick: make demo's settings for a CPU.
QUICK = {"eval.bpd.draws": 2, "eval.inpaint.images": 2, "eval.inpaint.starts": 100}
OLD_FLAGS = ("checkpoint", "images", "draws", "max_images", "rf_samples", "inpaint_images",
             "inpaint_starts", "inpaint_steps", "inception_weights", "fid_images",
             "fid_temperature")


def _define_flags():
  from rgflow_jax.configs import base  # noqa: PLC0415
  from rgflow_jax.run.evaluation import MODES  # noqa: PLC0415
  cli.define_config_flag(base.__file__)
  flags.DEFINE_string("workdir", None, "Run folder with checkpoints (local or gs://).")
  flags.DEFINE_string("mode", None, f"{', '.join(MODES)} or all (comma-separated): "
                      "config.eval.modes (default all).")
  flags.DEFINE_boolean("quick", False, "The CPU-sized settings that make demo uses: "
                       + " ".join(f"--config.{k}={v}" for k, v in QUICK.items())
                       + " (minutes on a 2-core CPU for --mode all, instead of about ten).")
  flags.DEFINE_boolean("json", False, "Also print eval.json's content on stdout.")
  cli.define_deprecated_eval_flags(OLD_FLAGS)
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  cli.quiet_libraries()
  from rgflow_jax.core.errors import RGFlowError  # noqa: PLC0415
  from rgflow_jax.run.evaluation import evaluate, summary_lines  # noqa: PLC0415
  from rgflow_jax.run import run_config  # noqa: PLC0415
  f = flags.FLAGS
  try:
    overrides = cli.eval_overrides(OLD_FLAGS, QUICK if f.quick else None)
    if f["config"].present:  # the file's config, its --config.* overrides applied
      config = run_config.with_overrides(cli.load_config(f["config"]), overrides)
    else:
      config = run_config.with_overrides(run_config.saved_config(f.workdir), overrides)
    if f.mode is not None:
      config.eval.modes = f.mode
    results = evaluate(config, f.workdir, on_mode=lambda line: print(line, flush=True))
  except (RGFlowError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  if f.json:
    print(json.dumps(results, indent=1))
  print(summary_lines(results)[-1])  # the mode lines were printed as each ended


def run():
  from rgflow_jax import configs  # noqa: PLC0415
  from rgflow_jax.configs import base  # noqa: PLC0415
  from rgflow_jax.run import evaluation  # noqa: PLC0415
  config = base.base_config()
  keys = "\n".join(line for line in configs.keys_help(config).splitlines()
                   if line.strip().startswith("eval."))
  usage = USAGE.format(modes=", ".join(evaluation.MODES), keys=keys)
  cli.run_program(main, _define_flags, usage, tune_cpu=True)


if __name__ == "__main__":
  run()
