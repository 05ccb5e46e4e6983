"""The command line: shipped configs by name, ml_collections' errors as one readable
line, what a finished run prints, and every entry point's --help."""


import pytest
from ml_collections import ConfigDict

from helpers import ROOT
from rgflow_jax import cli, configs
from rgflow_jax.cli import train
from rgflow_jax.configs import base
from rgflow_jax.run import evaluation


def test_config_names_resolve_to_the_shipped_files_and_paths_pass_through(tmp_path):
  resolved = configs.resolve("msds1:cpu,realnvp")
  assert resolved == f"{configs.FOLDER / 'msds1.py'}:cpu,realnvp"
  assert configs.resolve("celeba") == str(configs.FOLDER / "celeba.py")
  assert configs.resolve("configs/msds1.py:smoke") == "configs/msds1.py:smoke"
  own = tmp_path / "mine.py"
  own.write_text("def get_config(arg=''):\n  return {}\n")
  assert configs.resolve(f"{own}:x") == f"{own}:x"
  with pytest.raises(ValueError, match="unknown config 'msds3': use one of celeba, chairs, "
                     "cifar10, mnist, msds1, msds2 "):
    configs.resolve("msds3:cpu")
  # The repository's configs/ is the package's folder: one set of files.
  assert (ROOT / "configs" / "msds1.py").resolve() == configs.FOLDER / "msds1.py"


def test_help_names_every_config_and_every_variant():
  assert set(base.VARIANT_HELP) == set(base.SIZES) | set(base.MODIFIERS)
  text = configs.help_text()
  for word in configs.names() + list(base.VARIANT_HELP):
    assert f"{word}" in text, word


def test_ml_collections_messages_become_one_readable_line():
  try:
    ConfigDict({"batch_size": 1}).batchsize
  except AttributeError as e:  # a KeyError inside, whose str() is a repr
    lines = cli._message_lines(e)
  assert lines == ["'batchsize'", 'Did you mean "batch_size" instead of "batchsize"?']
  assert cli._message_lines(ValueError("one\n\ntwo")) == ["one", "two"]


def test_a_finished_run_prints_where_it_stopped_in_one_line():
  line = train.summary_line({"step": 20, "steps_this_run": 8, "stopped_by": "time_limit",
                             "train_bpd": 3.21456, "best_test_bpd": None,
                             "skipped_steps": 0})
  assert line == ("done: step 20 (8 this run), reached the time limit; train bits/dim "
                  "3.2146, best test bits/dim n/a, skipped steps 0")


def test_eval_summary_lines_say_n_a_for_one_draw():
  assert evaluation.plus_minus(None, 1) == "+- n/a (1 draw)"
  assert evaluation.plus_minus(0.00123, 4) == "+- 0.0012 (4 draws)"


def test_old_flat_keys_on_the_command_line_are_read_as_their_section_keys(capsys):
  argv = ["train.py", "--config.num_steps=3", "--config.data.data_dir", "d",
          "--config.model.hidden=(8,)", "--config.train.lr=1"]
  assert cli._moved_config_keys(argv) == [
      "train.py", "--config.train.num_steps=3", "--config.data.location.data_dir", "d",
      "--config.model.hidden=(8,)", "--config.train.lr=1"]  # (the last: no such key)
  notes = capsys.readouterr().err.splitlines()
  assert notes == ["note: --config.num_steps is now --config.train.num_steps (the old name "
                   "goes in the next release)", "note: --config.data.data_dir is now "
                   "--config.data.location.data_dir (the old name goes in the next release)"]


def test_every_config_key_has_a_help_line():
  def keys(d, prefix=""):
    for k, v in d.items():
      if hasattr(v, "items") and k != "reference_curve":
        yield from keys(v, f"{prefix}{k}.")
      else:
        yield prefix + k
  assert sorted(keys(base.base_config())) == sorted(base.KEY_HELP)
  lines = configs.keys_help().splitlines()
  assert len(lines) == len(base.KEY_HELP) and all(len(l.split()) >= 4 for l in lines)


def test_logged_warnings_read_as_the_commands_own_lines():
  import logging  # noqa: PLC0415

  from absl import logging as absl_logging  # noqa: PLC0415
  handler = absl_logging.get_absl_handler()
  old = handler.formatter
  # quiet_libraries sets these loggers' levels for the process: restored after, so that
  # later tests in this worker still see Orbax's notes (logged through "absl").
  levels = {name: logging.getLogger(name).level
            for name in ("absl", "jax", "gcsfs", "fsspec", "s3fs")}
  try:
    cli.quiet_libraries()
    assert logging.getLogger("absl").level == logging.WARNING
    record = logging.LogRecord("rgflow_jax.run", logging.WARNING, __file__, 1,
                               "best/ holds no checkpoint; evaluating %s", ("latest",), None)
    assert handler.format(record) == "warning: best/ holds no checkpoint; evaluating latest"
  finally:
    handler.setFormatter(old)
    for name, level in levels.items():
      logging.getLogger(name).setLevel(level)
