"""Parameters that carry their flow (rgflow_jax.bind / load): the functional API
equals the flow's methods, and jit, vmap and grad apply to it as it is."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rgflow_jax
from helpers import random_flow


def test_the_functional_api_is_the_flow_s_methods(x64):
  """Each function of the API on bound params equals the flow's method on the tree
  (both sides jitted: each program compiled once, not dispatched op by op)."""
  flow, tree = random_flow(8, 2, 4, jnp.float64)
  params = rgflow_jax.bind(flow, tree)
  y = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 2), jnp.float64)
  z, ld = jax.jit(rgflow_jax.encode)(params, y)   # nothing closed over
  z_ref, ld_ref = jax.jit(flow.encode)(tree, y)
  assert float(jnp.abs(z_ref - y).max()) > 0.1  # a real transformation
  np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-12)
  np.testing.assert_allclose(ld, ld_ref, rtol=0, atol=1e-12)
  y_back, ld_back = jax.jit(rgflow_jax.decode)(params, z)
  np.testing.assert_allclose(y_back, y, rtol=0, atol=1e-10)
  np.testing.assert_allclose(ld_back, -ld, rtol=0, atol=1e-10)
  log_prob_ref = jax.jit(flow.log_prob)(tree, y)
  np.testing.assert_allclose(jax.jit(rgflow_jax.log_prob)(params, y), log_prob_ref,
                             rtol=0, atol=1e-12)
  # The flow's own methods take either kind of params.
  np.testing.assert_allclose(jax.jit(flow.encode)(params, y)[0], z_ref, rtol=0, atol=1e-12)
  per_image = jax.jit(jax.vmap(lambda v: rgflow_jax.log_prob(params, v[None])[0]))(y)
  np.testing.assert_allclose(per_image, log_prob_ref, rtol=0, atol=1e-10)
  images = jax.jit(rgflow_jax.sample, static_argnums=2)(params, jax.random.PRNGKey(2), 2)
  np.testing.assert_allclose(images, jax.jit(flow.sample, static_argnums=2)(
      tree, jax.random.PRNGKey(2), 2), rtol=0, atol=1e-12)
  u8 = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 2), dtype=np.uint8)
  np.testing.assert_allclose(jax.jit(rgflow_jax.bits_per_dim)(params, u8, jax.random.PRNGKey(3)),
                             jax.jit(flow.bits_per_dim)(tree, u8, jax.random.PRNGKey(3)),
                             rtol=0, atol=1e-12)
  grads = jax.jit(jax.grad(lambda p: rgflow_jax.log_prob(p, y).sum()))(params)
  assert isinstance(grads, rgflow_jax.FlowParams) and grads.flow == flow
  assert params.num_params == flow.num_params(tree) > 0


def test_bad_params_are_one_line_errors():
  flow, tree = random_flow(8, 2, 4, jnp.float32)
  y = jnp.zeros((1, 8, 8, 2))
  with pytest.raises(TypeError, match=r"^encode\(params, \.\.\.\) needs params that carry "
                                      r"their flow, got a dict: .* or call encode\(flow, "):
    rgflow_jax.encode(tree, y)
  with pytest.raises(TypeError, match="got a flow"):
    rgflow_jax.sample(flow, jax.random.PRNGKey(0), 2)
  with pytest.raises(TypeError, match="needs a flow"):
    rgflow_jax.bind(tree, tree)
  other, _ = random_flow(8, 2, 2, jnp.float32)
  with pytest.raises(ValueError, match="another flow"):
    rgflow_jax.bind(other, rgflow_jax.bind(flow, tree))
