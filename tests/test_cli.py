"""The command line: shipped configs by name, ml_collections' errors as one readable
line, what a finished run prints, and every entry point's --help."""

import importlib
import os
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
    ("rgflow_jax.cli.eval", ["--workdir", "--mode", "--json", *evaluation.MODES]),
    ("rgflow_jax.cli.compare", ["--out", "--draws", "--inpaint_images"]),
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
