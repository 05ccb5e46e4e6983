"""FlowModule.from_run on a smoke run: its bits/dim are rgflow-eval's for the same
dequantisation keys, and the docs' NNX example runs (tests/e2e/test_readme.py runs
every docs block; this checks the run's numbers)."""

import jax
import numpy as np

from helpers import run_eval, smoke_config
from rgflow_jax import data
from rgflow_jax.nnx import FlowModule
from rgflow_jax.run import evaluation, jit_steps, training


def test_from_run_gives_the_bits_per_dim_that_rgflow_eval_gives(tmp_path):
  config = smoke_config(tmp_path)
  training.train_and_evaluate(config, tmp_path / "run")
  results = run_eval(config, tmp_path / "run", "bpd", {"bpd.draws": 1})
  module = FlowModule.from_run(tmp_path / "run")
  assert results["step"] == config.train.num_steps
  source = data.make_source(config.data, "test", 32, 3, False)
  images = np.stack([source[i] for i in range(len(source))])
  # eval's batches: the test images in order, the last filled up with zero rows; draw 0
  # of batch i is dequantised with fold_in(fold_in(the mode's key, 0), i)
  size = jit_steps.eval_batch_size(config.eval.batch_size)
  draw = jax.random.fold_in(evaluation.mode_key(config, "bpd"), 0)
  total = 0.0
  for i, start in enumerate(range(0, len(images), size)):
    batch = np.zeros((size,) + images.shape[1:], np.uint8)
    rows = images[start:start + size]
    batch[:len(rows)] = rows
    bpd = np.asarray(module.bits_per_dim(batch, jax.random.fold_in(draw, i)))
    total += float(bpd[:len(rows)].sum())
  assert i > 0  # several batches
  np.testing.assert_allclose(total / len(images), results["test_bpd"]["bpd"], rtol=1e-5)
