"""The flow as a Flax NNX module: the pure functions' values on the same parameters
(float64, exactly), a step through nnx.Optimizer equal to the project's own (float32),
nnx.jit / split / merge, an Orbax round trip, and Flax left out of ``import rgflow_jax``."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import rgflow_jax
from helpers import ROOT, random_flow, smoke_config, tiny_realnvp
from rgflow_jax.nnx import FlowModule
from rgflow_jax.run import jit_steps


@pytest.mark.parametrize("model", ["rgflow", "realnvp"])
def test_the_modules_functions_are_the_pure_ones_on_the_same_parameters(x64, model):
  if model == "rgflow":
    flow, params = random_flow(8, 2, 4, jnp.float64, seed=1)
  else:
    flow = tiny_realnvp(8, 2)
    params = flow.init(jax.random.PRNGKey(1), jnp.float64)
  module = FlowModule.from_params(flow, params)
  y = jax.random.normal(jax.random.PRNGKey(2), (3, 8, 8, 2), jnp.float64)
  for got, want in [(module.encode(y), flow.encode(params, y)),
                    (module.decode(y), flow.decode(params, y)),
                    (module.log_prob(y), flow.log_prob(params, y))]:
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
  images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 2), dtype=np.uint8)
  key = jax.random.PRNGKey(3)
  np.testing.assert_allclose(module.bits_per_dim(images, key),
                             flow.bits_per_dim(params, images, key), rtol=1e-12)
  np.testing.assert_allclose(module.sample(key, 2, 0.5), flow.sample(params, key, 2, 0.5),
                             rtol=1e-12, atol=1e-12)
  back = module.to_params()
  assert back.flow == flow
  for a, b in zip(jax.tree.leaves(back.tree), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(a, b)
  if model == "rgflow":
    np.testing.assert_allclose(module.receptive_field(1, 0, n_samples=2),
                               rgflow_jax.receptive_field(flow, params, 1, 0, n_samples=2),
                               rtol=1e-12)


def test_an_nnx_optimizer_step_equals_the_projects_step():
  config = smoke_config(ROOT / "unused")
  module = FlowModule.from_config(config, nnx.Rngs(params=0))
  flow, params = module.flow, module.tree()
  images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  tx = jit_steps.make_optimizer(config.train.optimizer, config.train.num_steps)
  # the project's step: its train state, its jitted step on a one-device mesh
  state = jit_steps.init_state(flow, config, jnp.float32, params)
  step = jit_steps.make_train_step(flow, tx, jit_steps.make_mesh())
  state, metrics = step(state, images)
  # the same through NNX: the step's dequantisation key, the same optax chain
  key = jax.random.fold_in(jit_steps.init_state(flow, config, jnp.float32, params)["rng"], 0)
  optimizer = nnx.Optimizer(module, tx, wrt=nnx.Param)

  @nnx.jit
  def nnx_step(module, optimizer, batch):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m.bits_per_dim(batch, key)))(module)
    optimizer.update(module, grads)
    return loss

  loss = nnx_step(module, optimizer, images)
  np.testing.assert_allclose(loss, metrics["train_bpd"], rtol=1e-6)
  for got, want in zip(jax.tree.leaves(module.tree()), jax.tree.leaves(state["params"]),
                       strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(module.tree()), jax.tree.leaves(params), strict=True))
  assert moved > 1e-4 and int(optimizer.step[...]) == 1


def test_split_merge_and_an_orbax_round_trip_keep_the_density(tmp_path):
  flow, params = random_flow(8, 1, 4, seed=4)
  module = FlowModule.from_params(flow, params)
  y = jax.random.normal(jax.random.PRNGKey(5), (2, 8, 8, 1))
  want = module.log_prob(y)
  graphdef, state = nnx.split(module)
  np.testing.assert_array_equal(nnx.merge(graphdef, state).log_prob(y), want)
  # (jitted, float32: XLA fuses differently from the eager ops)
  np.testing.assert_allclose(nnx.jit(lambda m, yy: m.log_prob(yy))(module, y), want,
                             rtol=1e-6)
  with ocp.StandardCheckpointer() as checkpointer:  # the NNX recipe: save the state
    checkpointer.save(tmp_path / "flow", nnx.state(module))
  fresh = FlowModule.from_params(flow, flow.init(jax.random.PRNGKey(9)))
  abstract = nnx.eval_shape(lambda: FlowModule.from_params(flow, params))
  graphdef, abstract_state = nnx.split(abstract)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / "flow", abstract_state)
  nnx.update(fresh, restored)
  np.testing.assert_array_equal(fresh.log_prob(y), want)


def test_bad_arguments_are_one_line():
  with pytest.raises(TypeError, match="needs a flow .RGFlow or RealNVP. first"):
    FlowModule({"a": 1}, {})
  flow, params = random_flow(8, 1, 4)
  other, _ = random_flow(16, 1, 4)
  with pytest.raises(ValueError, match="belong to another flow"):
    FlowModule(other, rgflow_jax.bind(flow, params))


def test_importing_rgflow_jax_does_not_import_flax():
  code = ("import sys, rgflow_jax; rgflow_jax.encode; import rgflow_jax.run.training; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flax'))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, check=True)
  assert out.stdout.strip() == "[]"
