"""The command-line boundary shared by the entry points (``rgflow-train``,
``rgflow-eval``, ``rgflow-compare``, ``python -m rgflow_jax.cli.convert``, and the
repository's train.py / eval.py / compare.py): config names resolved, flags and the
config file parsed into one-line errors, and quiet libraries.

The programs themselves are :mod:`rgflow_jax.cli.train`, :mod:`rgflow_jax.cli.eval`
and :mod:`rgflow_jax.cli.compare`; each defines its flags only when run (importing a
module defines none).
"""

from __future__ import annotations

import logging
import re
import sys

from absl import flags

from rgflow_jax import configs


def _message_lines(e: BaseException) -> list[str]:
  """An exception's message as lines, unwrapping what ml_collections wraps (an
  AttributeError around a KeyError whose text is a repr)."""
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
  return [l.strip() for l in text.splitlines()
          if l.strip() and not l.strip().startswith("Pass --help")]


def _last_line(e: BaseException) -> str:
  lines = _message_lines(e)
  return lines[-1] if lines else "no message"


def _resolve_config_names(argv: list[str]) -> list[str]:
  """``--config NAME[:variant]`` (a shipped config's name) as the config file's path."""
  out, it = [], iter(enumerate(argv))
  for i, arg in it:
    if i and arg in ("--config", "-config") and i + 1 < len(argv):
      out += [arg, configs.resolve(argv[i + 1])]
      next(it)
    elif i and arg.startswith(("--config=", "-config=")):
      flag, _, value = arg.partition("=")
      out.append(f"{flag}={configs.resolve(value)}")
    else:
      out.append(arg)
  return out


def _moved_config_keys(argv: list[str]) -> list[str]:
  """``--config.KEY=VALUE`` of a key the flat layout had (``--config.num_steps=3``) as
  its key today (``--config.train.num_steps=3``), with a one-line note each."""
  from rgflow_jax.configs import base  # noqa: PLC0415 (ml_collections only when run)
  out = []
  for arg in argv:
    flag, eq, value = arg.partition("=")
    key = flag.removeprefix("--config.").removeprefix("-config.")
    if key != flag and key in base.MOVED_KEYS:
      new = f"--config.{base.MOVED_KEYS[key]}"
      sys.stderr.write(f"note: --config.{key} is now {new} (the old name goes in the next "
                       "release)\n")
      arg = new + eq + value
    out.append(arg)
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """``flags.FLAGS(argv)`` for ``app.run(..., flags_parser=parse_flags)``: a bad flag,
  a config override of a key that does not exist, or a config variant that
  ``get_config`` refuses ends the program with one ``error:`` line (exit status 2)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # ml_collections reports a refused variant as "ValueError: ..."
    msg = re.sub(r"^(ValueError|TypeError): ", "", _last_line(e))
  except (AttributeError, KeyError) as e:  # an override of a key the config lacks
    msg = f"no config key {'; '.join(_message_lines(e))} (check the --config.* overrides)"
  except (TypeError, ValueError) as e:  # a variant get_config refuses, a value's type
    msg = _last_line(e)
  sys.stderr.write(f"error: bad command line: {msg}; see --helpshort\n")
  sys.exit(2)


def define_config_flag(default: str | None = None):
  """The ``--config`` flag every entry point takes, with the names and variants in its
  help text. With a ``default`` file (rgflow-eval, rgflow-compare: the base config),
  ``--config.KEY=VALUE`` is checked against it even where no ``--config`` is given, and
  :func:`config_overrides` returns what was given."""
  from ml_collections import config_flags  # noqa: PLC0415
  config_flags.DEFINE_config_file("config", default, configs.help_text(), lock_config=True)


def config_overrides() -> dict:
  """The ``--config.KEY=VALUE`` overrides of the command line, as ``{KEY: VALUE}``."""
  from ml_collections import config_flags  # noqa: PLC0415
  return dict(config_flags.get_override_values(flags.FLAGS["config"]))


# The options of rgflow-eval and rgflow-compare before they were config.eval keys: each
# still works for one release, as its key, with a one-line note.
DEPRECATED_EVAL_FLAGS = {
    "checkpoint": ("eval.checkpoint", flags.DEFINE_string),
    "images": ("eval.bpd.images", flags.DEFINE_string),
    "draws": ("eval.bpd.draws", flags.DEFINE_integer),
    "max_images": ("eval.bpd.max_images", flags.DEFINE_integer),
    "rf_samples": ("eval.rf.samples", flags.DEFINE_integer),
    "inpaint_images": ("eval.inpaint.images", flags.DEFINE_integer),
    "inpaint_starts": ("eval.inpaint.starts", flags.DEFINE_integer),
    "inpaint_steps": ("eval.inpaint.steps", flags.DEFINE_integer),
    "inception_weights": ("eval.fid.weights", flags.DEFINE_string),
    "fid_images": ("eval.fid.images", flags.DEFINE_integer),
    "fid_temperature": ("eval.fid.temperature", flags.DEFINE_float),
    "samples": ("eval.semantic.samples", flags.DEFINE_integer),
}


def define_deprecated_eval_flags(names):
  """The old flags ``names`` (keys of :data:`DEPRECATED_EVAL_FLAGS`), unset by default."""
  for name in names:
    key, define = DEPRECATED_EVAL_FLAGS[name]
    define(name, None, f"deprecated: --config.{key}")


def eval_overrides(names, quick: dict | None = None) -> dict:
  """The eval settings of the command line as ``{KEY: VALUE}``: ``quick`` (defaults a
  flag stands for), then the old flags ``names`` that were given (each with a one-line
  deprecation note on stderr), then the ``--config.KEY=VALUE`` overrides."""
  out = dict(quick or {})
  for name in names:
    value = flags.FLAGS[name].value
    if value is not None:
      key = DEPRECATED_EVAL_FLAGS[name][0]
      sys.stderr.write(f"note: --{name} is deprecated and goes in the next release: use "
                       f"--config.{key}={value}\n")
      out[key] = value
  out.update(config_overrides())
  return out


def run_program(main, define_flags, usage: str, tune_cpu: bool = False):
  """:func:`_run_program`, where a Ctrl-C at any moment (imports, compiles, loops that do
  not save on it) ends the program with one line and exit status 130."""
  try:
    _run_program(main, define_flags, usage, tune_cpu)
  except KeyboardInterrupt:
    sys.stderr.write("\ninterrupted (Ctrl-C)\n")
    sys.exit(130)


def _run_program(main, define_flags, usage: str, tune_cpu: bool = False):
  """Run an entry point: with ``tune_cpu``, the CPU process tuning first (it may restart
  the process: :func:`rgflow_jax.cli.xla_cpu.tune_cpu_process`); ``--config NAME`` resolved
  in ``sys.argv`` (an unknown name is one line); ``define_flags()`` called, its flags
  listed by ``--help`` under ``usage`` (console scripts and ``-m`` have no docstring of
  their own); then absl's ``app.run(main)`` with :func:`parse_flags`."""
  from absl import app  # noqa: PLC0415
  tuned = False
  if tune_cpu:
    from rgflow_jax.cli import xla_cpu  # noqa: PLC0415
    tuned = xla_cpu.tune_cpu_process(dispatch=False)
  try:
    sys.argv = _moved_config_keys(_resolve_config_names(sys.argv))
  except ValueError as e:
    sys.stderr.write(f"error: bad command line: {e}\n")
    sys.exit(2)
  before = set(flags.FLAGS)
  define_flags()
  main_module = sys.modules["__main__"]
  main_module.__doc__ = usage  # what absl's --help prints above the flags
  new = {id(flags.FLAGS[n]): flags.FLAGS[n] for n in sorted(set(flags.FLAGS) - before)}
  for flag in new.values():  # --help lists the main module's flags: these
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  def parse_then_tune(argv):
    rest = parse_flags(argv)
    if tuned:  # imports JAX: only once the command line is read
      xla_cpu.synchronous_dispatch()
    return rest

  app.run(main, flags_parser=parse_then_tune)


def load_config(config_flag):
  """The config of a ``DEFINE_config_file`` flag, or exit with one line naming the file."""
  try:
    config = config_flag.value
    config.keys()  # ml_collections defers a failed load to the first use
    return config
  except Exception as e:  # noqa: BLE001  (ml_collections wraps any loading failure)
    name = flags.FLAGS["config"].config_filename
    sys.exit(f"error: cannot load --config {name}: {_last_line(e)}")


class _PlainFormatter(logging.Formatter):
  """Log records as the commands' own lines read: ``warning: ...`` (absl's default
  format, ``W1206 12:00:00.123456 140 file.py:12] ...``, mixed badly with them)."""

  def format(self, record: logging.LogRecord) -> str:
    return f"{record.levelname.lower()}: {record.getMessage()}"


def quiet_libraries():
  """The libraries' INFO notes off, object-store clients' retries off, and what is
  logged (warnings and errors) in the commands' own one-line format."""
  from absl import logging as absl_logging  # noqa: PLC0415
  for name in ("absl", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)
  for name in ("gcsfs", "fsspec", "s3fs"):  # object-store clients: retries, cache notes
    logging.getLogger(name).setLevel(logging.CRITICAL)
  absl_logging.get_absl_handler().setFormatter(_PlainFormatter())
