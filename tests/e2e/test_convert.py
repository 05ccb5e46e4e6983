"""python -m rgflow_jax.cli.convert: the authors' checkpoint into a run that eval.py and
train.py use like any other, and back out as their state_dict (.npz here: reading and
writing .state files is torch's torch.load / torch.save, not needed by the suite)."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import FIXTURES, ROOT, load_config
from rgflow_jax.io import authors_weights, checkpoint
from rgflow_jax.run import jit_steps, run_config

FIXTURE = FIXTURES / "authors" / "L32_C3_k4.npz"  # their model at the :smoke config's size
CONFIG = str(ROOT / "configs/msds1.py:smoke,authors")


def _run(*args, cwd=None):
  return subprocess.run([sys.executable, *args], cwd=cwd or ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _convert(*flags):
  return _run("-m", "rgflow_jax.cli.convert", "--config", CONFIG, *flags)


def test_import_evaluate_fine_tune_and_export(tmp_path):
  work, data_dir = tmp_path / "imported", tmp_path / "data"
  out = _convert(f"--from={FIXTURE}", f"--workdir={work}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "imported" in out.stdout and "as step 0" in out.stdout
  # The checkpoint holds their weights, mapped.
  c = load_config("msds1", "smoke,authors")
  flow = run_config.build_model(c)
  with np.load(FIXTURE) as f:
    state = {k.removeprefix("state/"): f[k] for k in f.files if k.startswith("state/")}
  want, _ = authors_weights.import_state(flow, state)
  ckpts = checkpoint.Checkpoints(work, read_only=True)
  restored, meta = ckpts.restore(jit_steps.init_state(flow, c, jnp.float32))
  ckpts.close()
  assert meta["step"] == 0 and meta["imported_from"] == str(FIXTURE)
  chex.assert_trees_all_equal(restored["params"],
                              jax.tree.map(lambda a: np.asarray(a, np.float32), want))
  # eval.py reads it like any run (given the previous release's flags)...
  out = _run("eval.py", "--config", CONFIG, f"--workdir={work}",
             f"--config.data.location.data_dir={data_dir}", "--mode=bpd,inpaint", "--draws=1",
             "--checkpoint=latest", "--inpaint_images=1", "--inpaint_starts=2",
             "--inpaint_steps=2")
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((work / "eval" / "eval.json").read_text())
  assert result["step"] == 0 and np.isfinite(result["test_bpd"]["bpd"])
  # (the options of the previous release still work, as their keys, with a note each)
  assert "note: --draws is deprecated and goes in the next release: use " \
      "--config.eval.bpd.draws=1" in out.stderr
  assert out.stderr.count("is deprecated") == 5 and len(result["test_bpd"]["draws"]) == 1
  assert len(result["inpaint"]["rows"]) == 1 and result["checkpoint"] == "latest"
  # (and inpaints on the cone, saying so and how long it took)
  assert "inpainting (free: cone; each step computes the cone's blocks only): PSNR" in out.stdout
  assert result["inpaint"]["median_seconds_cone"] > 0
  # ...train.py fine-tunes it...
  out = _run("train.py", "--config", CONFIG, f"--workdir={work}",
             f"--config.data.location.data_dir={data_dir}", "--config.train.num_steps=2",
             "--config.train.samples.every=0")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "done: step 2 (2 this run)" in out.stdout
  # ...and the export of the imported step is their state_dict, name by name (the
  # parameters as float32, the dtype of the run).
  fresh = tmp_path / "again"
  assert _convert(f"--from={FIXTURE}", f"--workdir={fresh}").returncode == 0
  target = tmp_path / "theirs.npz"
  out = _convert(f"--to={target}", f"--workdir={fresh}")
  assert out.returncode == 0, out.stderr[-3000:]
  with np.load(target) as f:
    back = {k.removeprefix("state/"): f[k] for k in f.files}
  assert sorted(back) == sorted(state)
  for k, v in state.items():
    np.testing.assert_array_equal(back[k], v.astype(np.float32), err_msg=k)


@pytest.mark.parametrize("config,flags,message", [
    ("configs/msds1.py:smoke", [], "layer_order=authors"),
    ("configs/msds1.py:smoke,authors", ["--config.model.hidden=[16]"], "saved for another size"),
])
def test_a_checkpoint_that_does_not_fit_the_config_is_one_line(tmp_path, config, flags,
                                                                message):
  out = _run("-m", "rgflow_jax.cli.convert", "--config", str(ROOT / config), *flags,
             f"--from={FIXTURE}", f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, out.stderr[-2000:]


def test_no_torch_and_a_second_import_are_one_line(tmp_path):
  fake = tmp_path / "100.state"
  fake.write_bytes(b"not a torch file")
  out = _convert(f"--from={fake}", f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "torch" in out.stderr.strip().splitlines()[-1]
  assert _convert(f"--from={FIXTURE}", f"--workdir={tmp_path / 'w2'}").returncode == 0
  out = _convert(f"--from={FIXTURE}", f"--workdir={tmp_path / 'w2'}")
  assert out.returncode == 1 and "already holds checkpoints" in out.stderr
