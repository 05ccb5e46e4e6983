"""The commands as processes: every entry point's help, a misspelt key refused before JAX
loads, Ctrl-C answered at once."""

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT
from rgflow_jax import configs
from rgflow_jax.configs import base
from rgflow_jax.run import evaluation


@pytest.mark.parametrize("module,words", [
    ("rgflow_jax.cli.train", ["--workdir", "--config", "msds1:cpu"]),
    ("rgflow_jax.cli.eval", ["--workdir", "--mode", "--json", *evaluation.MODES,
                             "eval.inpaint.steps = 300", "deprecated: --config.eval.bpd.draws"]),
    ("rgflow_jax.cli.compare", ["--out", "--config.eval.*", "--config.eval.fid.weights"]),
    ("rgflow_jax.cli.convert", ["--from", "--to", "--workdir"]),
    ("rgflow_jax.cli.explore", ["--workdir", "--port", "--host", "127.0.0.1", "[explore]"]),
])
def test_help_of_every_entry_point_lists_its_flags_configs_and_variants(module, words):
  out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  text = " ".join(out.stdout.split())  # absl wraps long help lines
  # compare and explore read each run's own config
  if module not in ("rgflow_jax.cli.compare", "rgflow_jax.cli.explore"):
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
