"""Level mixing (eq. 15), progressive decoding and traversals."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import random_flow, tiny_flow
from rgflow_jax.core import pixels
from rgflow_jax.paper import latents


def test_mix_levels_follows_eq_15():
  flow = tiny_flow(16, 3, 4)
  za = jnp.ones((2,) + flow.event_shape)
  zb = -jnp.ones((2,) + flow.event_shape)
  np.testing.assert_array_equal(latents.mix_levels(flow, za, zb, 0), za)
  np.testing.assert_array_equal(latents.mix_levels(flow, za, zb, flow.num_levels), zb)
  mixed = np.asarray(latents.mix_levels(flow, za, zb, 1))
  lvl = flow.level_of_site()
  assert (mixed[:, lvl >= 1] == 1).all() and (mixed[:, lvl == 0] == -1).all()


def test_progressive_decoding_and_traversal():
  flow, params = random_flow(16, 3, 4)
  z = flow.sample_latents(jax.random.PRNGKey(0), 2)
  steps = jax.jit(lambda p, z: latents.progressive(flow, p, z))(params, z)
  assert steps.shape == (flow.num_levels, 2, 16, 16, 3)
  full = pixels.from_flow(flow.decode(params, z)[0])
  np.testing.assert_allclose(steps[-1], full, atol=1e-6)  # all levels on: the sample
  mode = pixels.from_flow(flow.decode(params, jnp.where(
      latents.level_mask(flow, [flow.num_levels - 1]), z, 0.0))[0])
  np.testing.assert_allclose(steps[0], mode, atol=1e-6)
  rows = latents.traverse(flow, params, z, (0, 0, 1), jnp.linspace(-2, 2, 5))
  assert rows.shape == (5, 2, 16, 16, 3)
  assert float(jnp.abs(rows[0] - rows[-1]).max()) > 0
