"""The command line: shipped configs by name, ml_collections' errors as one readable
line, what a finished run prints, and every entry point's --help."""

import importlib
import os
import re
import subprocess
import sys

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


@pytest.mark.parametrize("name", configs.names())
def test_every_shipped_config_builds_at_every_size(name):
  module = importlib.import_module(f"rgflow_jax.configs.{name}")
  for variant in ("", "cpu", "smoke", "smoke,gaussian,accel"):
    c = module.get_config(variant)
    assert c.data.name == {"chairs": "folder"}.get(name, name) and c.model.name == "rgflow"


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


@pytest.mark.e2e
@pytest.mark.parametrize("module,words", [
    ("rgflow_jax.cli.train", ["--workdir", "--config", "msds1:cpu"]),
    ("rgflow_jax.cli.eval", ["--workdir", "--mode", "--json", *evaluation.MODES,
                             "eval.inpaint.steps = 300", "deprecated: --config.eval.bpd.draws"]),
    ("rgflow_jax.cli.compare", ["--out", "--config.eval.*", "--config.eval.fid.weights"]),
    ("rgflow_jax.cli.convert", ["--from", "--to", "--workdir"]),
])
def test_help_of_every_entry_point_lists_its_flags_configs_and_variants(module, words):
  out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  text = " ".join(out.stdout.split())  # absl wraps long help lines
  if module != "rgflow_jax.cli.compare":  # compare reads each run's own config
    words = words + configs.names() + list(base.VARIANT_HELP)
  missing = [w for w in words if w not in text]
  assert not missing, (missing, out.stdout[-3000:], out.stderr[-2000:])
  assert "Traceback" not in out.stderr
  if module == "rgflow_jax.cli.train":  # every config key, its default and its line
    for key, default in [("train.time_limit_s", "0.0"), ("train.num_steps", "200000"),
                         ("train.batch_size", "64"), ("data.location.data_dir", "'data'"),
                         ("train.optimizer.lr", "0.001"), ("hosts.init_timeout_s", "300")]:
      assert re.search(rf"^  {re.escape(key)} = {re.escape(default)} +\S", out.stdout,
                       re.M), key


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


@pytest.mark.e2e
def test_a_misspelt_config_key_is_refused_before_jax_is_imported():
  """The typo is refused in one line by a process that never imports JAX (a second
  of the ~3 s budget otherwise): -X importtime lists every module imported."""
  out = subprocess.run([sys.executable, "-X", "importtime", "-m", "rgflow_jax.cli.train",
                        "--config", "msds1:cpu", "--config.train.tim_limit_s=3"],
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode == 2
  errors = [l for l in out.stderr.splitlines() if not l.startswith("import time:")]
  assert errors == ["error: bad command line: no config key 'tim_limit_s'; Did you mean "
                    "\"time_limit_s\" instead of \"tim_limit_s\"? (check the --config.* "
                    "overrides); see --helpshort"], errors
  imported = {l.split("|")[-1].strip() for l in out.stderr.splitlines()
              if l.startswith("import time:")}
  assert "ml_collections" in imported and "jax" not in imported


def _train_until(tmp_path, name, line_start):
  """A train.py on msds1:smoke (long), read until a stderr line starts with ``line_start``."""
  proc = subprocess.Popen(
      [sys.executable, str(ROOT / "train.py"), "--config", "msds1:smoke",
       f"--workdir={tmp_path / name}", f"--config.data.location.data_dir={tmp_path / 'data'}",
       "--config.train.num_steps=100000", "--config.progress=false"],
      stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=str(ROOT)))
  lines = []
  for line in proc.stderr:
    lines.append(line.rstrip("\n"))
    if line.startswith(line_start):
      return proc, lines
  raise AssertionError(f"no line starting {line_start!r}: {lines}")


@pytest.mark.campaign
@pytest.mark.e2e
def test_ctrl_c_is_answered_at_once_and_a_second_one_stops_at_once(tmp_path):
  """Ctrl-C while the step compiles: a line at once (XLA holds Python's handler until
  the compile ends), then the run stops after its first step with a checkpoint, exit
  130. Twice: one 'interrupted' line, exit 130, no traceback."""
  import signal  # noqa: PLC0415
  import time  # noqa: PLC0415
  proc, lines = _train_until(tmp_path, "once", "compiling the training step")
  proc.send_signal(signal.SIGINT)
  sent = time.monotonic()
  for line in proc.stderr:
    lines.append(line.rstrip("\n"))
    if line.startswith("Ctrl-C: stopping after this step"):
      answered = time.monotonic() - sent
      break
  out, err = proc.communicate(timeout=120)
  lines += err.splitlines()
  assert proc.returncode == 130, lines
  assert answered < 2.0, answered
  assert "stopped by Ctrl-C (checkpoint saved)" in out, out
  assert any((tmp_path / "once" / "checkpoints").iterdir())
  assert "Traceback" not in "\n".join(lines)

  proc, lines = _train_until(tmp_path, "twice", "compiling the training step")
  proc.send_signal(signal.SIGINT)
  time.sleep(0.3)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  lines += err.splitlines()
  assert proc.returncode == 130, lines
  assert lines[-1] == "interrupted (Ctrl-C)" and "Traceback" not in err, lines


def test_logged_warnings_read_as_the_commands_own_lines():
  import logging  # noqa: PLC0415
  from absl import logging as absl_logging  # noqa: PLC0415
  handler = absl_logging.get_absl_handler()
  old = handler.formatter
  try:
    cli.quiet_libraries()
    record = logging.LogRecord("rgflow_jax.run", logging.WARNING, __file__, 1,
                               "best/ holds no checkpoint; evaluating %s", ("latest",), None)
    assert handler.format(record) == "warning: best/ holds no checkpoint; evaluating latest"
  finally:
    handler.setFormatter(old)
