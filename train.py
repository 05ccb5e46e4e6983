"""Train RG-Flow: ``python train.py --config configs/msds1.py:cpu [--workdir runs/x]``.

Resumes from the latest checkpoint in the workdir; override any config value on the
command line (``--config.batch_size=32``). All logic lives in
``rgflow_jax.training.train_and_evaluate``.

Exit status: 0 when the run reached num_steps or its time limit; 1 with a one-line
``error:`` for bad input or a stopped run; 128 + the signal number (143 for SIGTERM,
130 for Ctrl-C) after saving a checkpoint on a signal, so a scheduler sees that the
run did not finish.
"""

import errno
import signal
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default runs/<config name>).")
flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  return str(Path("runs") / (Path(path).stem + (f"-{variant}" if variant else "")))


def main(argv):
  del argv
  from rgflow_jax import cli
  cli.quiet_libraries()
  from rgflow_jax import multihost
  from rgflow_jax.data import DataError
  from rgflow_jax.training import TrainingError, train_and_evaluate
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  try:
    summary = train_and_evaluate(cli.load_config(_CONFIG), workdir)
  except OSError as e:
    if e.errno == errno.ENOSPC:  # a log or figure write that found the disk full
      sys.exit(f"error: the disk is full ({e}); free some space and rerun to resume from "
               "the last checkpoint")
    sys.exit(f"error: {e}")
  except (DataError, TrainingError, ValueError) as e:
    sys.exit(f"error: {multihost.lost_peer_message(e) or e}")
  print(f"done: {summary}")
  if summary["stopped_by"] in ("SIGTERM", "SIGINT"):
    sys.exit(128 + signal.Signals[summary["stopped_by"]].value)


if __name__ == "__main__":
  from rgflow_jax import xla_cpu
  xla_cpu.tune_cpu_process()  # on CPU only: XLA flag, allocator restart, dispatch (see xla_cpu)
  from rgflow_jax import cli
  app.run(main, flags_parser=cli.parse_flags)
