"""The evaluation step: per-draw test bits/dim and the importance-weighted estimate."""

import math

import jax
import numpy as np
import pytest

from helpers import random_flow
from rgflow_jax import data
from rgflow_jax.run import jit_steps


@pytest.fixture(scope="module")
def setup():
  flow, params = random_flow(image_size=8, channels=1)
  images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1), dtype=np.uint8)
  return flow, params, images, jit_steps.make_mesh()


def _direct(flow, params, images, draw_rngs, batch):
  """Per-draw, per-image bits/dim (K, N) with the step's keys, batch by batch (the last
  batch padded with blank images, as the step sees it: the noise depends on the shape)."""
  rows = []
  for i, start in enumerate(range(0, len(images), batch)):
    part = images[start:start + batch]
    n = len(part)
    part = np.concatenate([part, np.zeros((batch - n,) + part.shape[1:], part.dtype)])
    rows.append([np.asarray(flow.bits_per_dim(params, part, jax.random.fold_in(k, i)),
                            np.float64)[:n] for k in draw_rngs])
  return np.concatenate([np.stack(r) for r in rows], axis=1)


@pytest.mark.parametrize("draws", [1, 3])
def test_importance_weighted_bits_per_dim(setup, draws):
  flow, params, images, mesh = setup
  draw_rngs = np.stack([jax.random.fold_in(jax.random.PRNGKey(5), d) for d in range(draws)])
  batches = data.eval_batches(data.ArraySource(images, "test"), 4)  # 7 images: padding
  got = jit_steps.evaluate_draws(flow, params, batches, mesh, draw_rngs)
  bpd = _direct(flow, params, images, draw_rngs, 4)
  nats = math.log(2.0) * flow.num_dims
  per_image = -(np.logaddexp.reduce(-bpd * nats, axis=0) - math.log(draws)) / nats
  assert got["images"] == 7
  np.testing.assert_allclose(got["per_draw"], bpd.mean(axis=1), rtol=1e-6)
  assert got["iw"] == pytest.approx(per_image.mean(), rel=1e-6)
  assert got["iw_stderr"] == pytest.approx(per_image.std(ddof=1) / math.sqrt(7), rel=1e-5)
  if draws == 1:  # one draw: the estimate is the draw's mean
    assert got["iw"] == pytest.approx(got["per_draw"][0], rel=1e-6)
  else:  # Jensen: below the mean of the draws, and strictly for distinct draws
    assert got["iw"] < np.mean(got["per_draw"])


def test_the_flat_state_is_the_tree_state_rearranged_exactly(setup):
  """FlatState: parameters and Adam's moments as one vector each, the count and the
  other leaves as they were; back to the tree bit for bit; and a step on the flat state
  equals the step on the tree (float32, the same optax chain)."""
  import jax.numpy as jnp  # noqa: PLC0415

  from helpers import UNIT_BATCH, unit_config  # noqa: PLC0415
  from rgflow_jax.run import run_config  # noqa: PLC0415
  c = unit_config()
  flow = run_config.build_model(c)
  state = jit_steps.init_state(flow, c, jnp.float32)
  state["params"] = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(1), p.shape),
                                 state["params"])
  layout = jit_steps.FlatState(state["params"])
  flat = layout.flatten(state)
  n = sum(x.size for x in jax.tree.leaves(state["params"]))
  assert flat["params"].shape == (n,) == (layout.size,)
  vectors = [x for x in jax.tree.leaves(flat["opt_state"]) if x.shape == (n,)]
  assert len(vectors) == 2  # mu and nu
  jax.tree.map(np.testing.assert_array_equal, layout.unflatten(flat), state)
  mesh = jit_steps.make_mesh()
  opt = jit_steps.make_optimizer(c.train.optimizer, c.train.num_steps)
  batch = np.random.default_rng(0).integers(0, 256, UNIT_BATCH).astype(np.uint8)
  tree_step = jit_steps.make_train_step(flow, opt, mesh)
  loop_step = jit_steps.make_loop_step(flow, opt, mesh, layout)
  want, _ = tree_step(jax.tree.map(jnp.copy, state), jit_steps.global_batch(batch, mesh))
  got, _ = loop_step(layout.flatten(state), jit_steps.new_window(mesh),
                     jit_steps.global_batch(batch, mesh))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               layout.unflatten(got), want)


def test_command_buffer_options_only_for_a_gpu_mesh():
  """XLA:GPU options on a GPU mesh (unless turned off), XLA's defaults elsewhere: a CPU
  or TPU compiler would reject the GPU flags. That XLA:GPU accepts them is checked by
  make check-accel's deviceless H100 compile."""
  assert jit_steps.compiler_options(jit_steps.make_mesh()) is None  # this CPU

  class Device:
    platform = "gpu"

  class GpuMesh:
    devices = np.array([Device()])

  options = jit_steps.compiler_options(GpuMesh())
  assert options == jit_steps.GPU_COMMAND_BUFFERS
  assert {"WHILE", "CONDITIONAL"} <= set(options["xla_gpu_enable_command_buffer"].split(","))
  assert jit_steps.compiler_options(GpuMesh(), command_buffers=False) is None


def test_remat_auto_recompiles_with_remat_where_the_compiler_refuses_the_plan(monkeypatch):
  """XLA:TPU refuses a plan larger than the chip at compile time (RESOURCE_EXHAUSTED):
  remat "auto" then compiles with remat; other errors, and an explicit choice, raise."""
  calls = []

  class Step:
    def __init__(self, ex, error):
      self.ex, self.error = ex, error

    def lower(self, *args):
      return self

    def compile(self, compiler_options=None):
      calls.append(self.ex.remat)
      if not self.ex.remat and self.error:
        raise RuntimeError(self.error)
      return f"compiled remat={self.ex.remat}"

  def patch(error):
    calls.clear()
    monkeypatch.setattr(jit_steps, "make_loop_step",
                        lambda flow, opt, mesh, layout, precision, ex: Step(ex, error))

  mesh = jit_steps.make_mesh()
  patch("RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: Ran out of memory on HBM")
  compiled, ex = jit_steps.compile_loop_step(None, None, mesh, None, (), budget=1)
  assert (compiled, ex.remat, calls) == ("compiled remat=True", True, [False, True])
  with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):  # remat chosen: off
    jit_steps.compile_loop_step(None, None, mesh, None, (), remat=False)
  patch("INTERNAL: something else")
  with pytest.raises(RuntimeError, match="INTERNAL"):
    jit_steps.compile_loop_step(None, None, mesh, None, ())
  patch(None)  # it fits, and a CPU has no budget: one compile, no remat
  compiled, ex = jit_steps.compile_loop_step(None, None, mesh, None, ())
  assert (ex.remat, calls) == (False, [False])
