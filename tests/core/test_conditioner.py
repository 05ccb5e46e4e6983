"""The conditioner networks: the identity at init (zero final scale), weight norm
(w = v at init, |w| = g per output unit), the init's bounds, and the residual MLP
against its formula written out."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import conditioner


def test_a_fresh_network_outputs_zeros_so_each_coupling_starts_as_the_identity():
  params = conditioner.init_network(jax.random.PRNGKey(0), 12, 16, 2, 3)
  x = jax.random.normal(jax.random.PRNGKey(1), (5, 12))
  np.testing.assert_array_equal(conditioner.apply_network(params, x), 0.0)
  assert [p["v"].shape for p in params["layers"]] == [(3, 12, 16), (3, 16, 16), (3, 16, 12)]
  assert conditioner.widths(12, 16, 2) == (12, 16, 16, 12)


def test_weight_norm_gives_v_at_init_and_g_as_each_output_units_norm():
  v, g = conditioner.init_weight_norm(jax.random.PRNGKey(2), (7, 4), 7, jnp.float32)
  assert float(jnp.abs(v).max()) <= math.sqrt(3 * conditioner.INIT_GAIN / 7)
  np.testing.assert_allclose(conditioner.weight_norm(v, g), v, rtol=1e-6)
  g2 = jnp.arange(1.0, 5.0)
  w = conditioner.weight_norm(v, g2)
  np.testing.assert_allclose(jnp.linalg.norm(w, axis=0), g2, rtol=1e-6)


def test_the_residual_mlp_is_its_formula(x64):
  dim, hidden = 6, 5
  params = conditioner.init_network(jax.random.PRNGKey(3), dim, hidden, 1, 2, jnp.float64)
  params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(4), a.shape,
                                                              a.dtype), params)
  x = jax.random.normal(jax.random.PRNGKey(5), (3, dim), jnp.float64)
  y = np.asarray(x)
  for r in range(2):  # x <- (x + f(x)) / sqrt(2), f = [swish, linear] twice
    h = y
    for p in params["layers"]:
      w = np.asarray(p["v"][r]) * np.asarray(p["g"][r]) / np.linalg.norm(p["v"][r], axis=0)
      beta = np.asarray(p["beta"][r])
      h = (h / (1 + np.exp(-beta * h))) @ w + np.asarray(p["b"][r])
    y = (y + h) / math.sqrt(2)
  np.testing.assert_allclose(conditioner.apply_network(params, x),
                             y * np.asarray(params["scale"]), rtol=1e-12)
