"""``rgflow-train`` (or ``python -m rgflow_jax.cli.train``, or the repository's
``python train.py``): train a config in a run folder, resuming from its last checkpoint.

Exit status: 0 when the run reached num_steps or its time limit; 1 with a one-line
``error:`` for bad input or a stopped run; 2 for a bad command line or config value;
128 + the signal
number (143 for SIGTERM, 130 for Ctrl-C) after saving a checkpoint on a signal, so a
scheduler sees that the run did not finish.
"""

from __future__ import annotations

import errno
import signal
import sys
from pathlib import Path

from absl import flags

from rgflow_jax import cli

USAGE = """Train RG-Flow (or the Real NVP baseline), resuming from the run's last checkpoint.

  rgflow-train --config msds1:cpu [--workdir runs/msds1-cpu] [--config.KEY=VALUE ...]

--config names the config and its variants (below, under flags). Any config value can
be overridden: --config.train.batch_size=32, --config.model.hidden='(64,)' (the keys follow).
The run folder (local or gs://) gets checkpoints/, best/, metrics.jsonl, tensorboard/,
samples/ and config.json; a rerun with the same folder resumes. A folder that holds an
earlier run but no checkpoint to resume is refused unless --resume_from_best or
--start_over says what to do with it. Evaluate a run with rgflow-eval.

Config keys, with the base config's values (a config and its variants change some;
a run's own are in its config.json):
{config_keys}
"""


def _define_flags():
  cli.define_config_flag()
  flags.DEFINE_string("workdir", None, "Run folder, local or gs:// (default "
                      "runs/<config name>[-<variant>]).")
  flags.DEFINE_boolean("resume_from_best", False, "Where the run folder holds an earlier "
                       "run but no intact checkpoint to resume: go on from its best/ "
                       "checkpoint (the steps after it are trained again).")
  flags.DEFINE_boolean("start_over", False, "Move the earlier run's files in the run "
                       "folder whole to earlier-runs/<date>-<time>/ and train from step 0.")
  flags.mark_flags_as_required(["config"])
  flags.register_multi_flags_validator(
      ["resume_from_best", "start_over"], lambda f: not (f["resume_from_best"] and
                                                         f["start_over"]),
      message="--resume_from_best and --start_over exclude each other: give one")


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  return str(Path("runs") / (Path(path).stem + (f"-{variant}" if variant else "")))


def summary_line(summary: dict) -> str:
  """What a finished run prints: where it stopped and its bits/dim."""
  def bpd(v):
    return "n/a" if v is None else f"{v:.4f}"
  why = {"num_steps": "reached num_steps", "time_limit": "reached the time limit",
         "SIGTERM": "stopped by SIGTERM (checkpoint saved)",
         "SIGINT": "stopped by Ctrl-C (checkpoint saved)"}.get(summary["stopped_by"],
                                                             summary["stopped_by"])
  return (f"done: step {summary['step']} ({summary['steps_this_run']} this run), {why}; "
          f"train bits/dim {bpd(summary['train_bpd'])}, best test bits/dim "
          f"{bpd(summary['best_test_bpd'])}, skipped steps {summary['skipped_steps']}")


def _fail(message: str):
  """Exit 1 with ``message``; one of several processes leaves at once, past JAX's
  shutdown barrier (where it would wait for a lost peer, then abort)."""
  from rgflow_jax.io import multihost  # noqa: PLC0415
  if multihost.many_processes():
    multihost.exit_now(message, 1)
  sys.exit(message)


def main(argv):
  del argv
  cli.quiet_libraries()
  from rgflow_jax.io import multihost  # noqa: PLC0415  (after the CPU tuning and flags)
  from rgflow_jax.core.errors import RGFlowError  # noqa: PLC0415
  from rgflow_jax.run.run_config import ConfigError  # noqa: PLC0415
  from rgflow_jax.run.training import train_and_evaluate  # noqa: PLC0415
  f = flags.FLAGS
  workdir = f.workdir or default_workdir(f["config"].config_filename)
  earlier_run = ("resume_from_best" if f.resume_from_best else
                 "start_over" if f.start_over else None)
  try:
    summary = train_and_evaluate(cli.load_config(f["config"]), workdir, earlier_run)
  except ConfigError as e:
    sys.stderr.write(f"error: bad config: {e}\n")
    sys.exit(2)
  except OSError as e:
    if e.errno == errno.ENOSPC:  # a log or figure write that found the disk full
      _fail(f"error: the disk is full ({e}); free some space and rerun to resume from the "
            "last checkpoint")
    _fail(f"error: {e}")
  except (RGFlowError, ValueError) as e:
    _fail(f"error: {multihost.lost_peer_message(e) or e}")
  except Exception as e:  # noqa: BLE001  (a collective that failed with a peer gone)
    message = multihost.lost_peer_message(e)
    if message is None:
      raise
    _fail(f"error: {message}")
  print(summary_line(summary))
  if summary["stopped_by"] in ("SIGTERM", "SIGINT"):
    sys.exit(128 + signal.Signals[summary["stopped_by"]].value)


def run():
  from rgflow_jax import configs  # noqa: PLC0415
  cli.run_program(main, _define_flags, USAGE.format(config_keys=configs.keys_help()),
                  tune_cpu=True)


if __name__ == "__main__":
  run()
