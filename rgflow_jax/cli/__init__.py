"""The command-line boundary shared by train.py, eval.py and compare.py: flags and the
config file parsed into one-line errors, and quiet object-store clients."""

from __future__ import annotations

import logging
import sys

from absl import flags


def _last_line(text: str) -> str:
  lines = [l.strip() for l in str(text).splitlines()
           if l.strip() and not l.strip().startswith("Pass --help")]
  return lines[-1] if lines else "no message"


def parse_flags(argv: list[str]) -> list[str]:
  """``flags.FLAGS(argv)`` for ``app.run(..., flags_parser=parse_flags)``: a bad flag,
  a config override of a key that does not exist, or a config variant that
  ``get_config`` refuses ends the program with one ``error:`` line (exit status 2)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    msg = _last_line(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    msg = (f"{type(e).__name__}: {_last_line(e)} (check the --config.* overrides against "
           "the config file)")
  sys.stderr.write(f"error: bad command line: {msg}; see --helpshort\n")
  sys.exit(2)


def load_config(config_flag):
  """The config of a ``DEFINE_config_file`` flag, or exit with one line naming the file."""
  try:
    config = config_flag.value
    config.keys()  # ml_collections defers a failed load to the first use
    return config
  except Exception as e:  # noqa: BLE001  (ml_collections wraps any loading failure)
    name = flags.FLAGS["config"].config_filename
    sys.exit(f"error: cannot load --config {name}: {_last_line(e)}")


def quiet_libraries():
  for name in ("absl", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)
  for name in ("gcsfs", "fsspec", "s3fs"):  # object-store clients: retries, cache notes
    logging.getLogger(name).setLevel(logging.CRITICAL)
