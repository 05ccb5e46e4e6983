"""Receptive fields, exact through forward-mode derivatives."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_flow, tiny_flow
from rgflow_jax.core import cones
from rgflow_jax.paper import receptive


def test_receptive_field_at_identity_init_is_its_own_site():
  flow = tiny_flow(8, 2, 4)
  params = flow.init(jax.random.PRNGKey(0))
  for level, site in [(0, (1, 2)), (1, (2, 6)), (1, (0, 2))]:
    rf = receptive.receptive_field_at_site(flow, params, level, site, jax.random.PRNGKey(1), 4)
    support = np.argwhere(rf > 0)
    assert support.tolist() == [list(site)]


@pytest.mark.parametrize("order", ["paper", "authors"])
def test_receptive_fields_fill_their_generation_cone(x64, order):
  flow, params = random_flow(16, 1, 4, jnp.float64, n_layers=2, layer_order=order)
  for level in range(flow.num_levels):
    for site in receptive.latent_sites(flow, level)[::7][:3]:
      rf = receptive.receptive_field_at_site(flow, params, level, tuple(site),
                                             jax.random.PRNGKey(2), 2)
      cone = cones.generation_cone(flow, level, tuple(site))
      assert not (rf[~cone] != 0).any()
      assert (rf[cone] > 0).mean() > 0.99


def test_the_index_form_is_the_site_form_of_that_latent(x64):
  import rgflow_jax  # noqa: PLC0415
  flow, params = random_flow(8, 2, 4, jnp.float64)
  latents = receptive.latents_of_level(flow, 1)
  assert len(latents) == flow.latents_per_level()[1]
  rng = jax.random.PRNGKey(7)
  for idx in (0, 5, len(latents) - 1):
    i, j, c = latents[idx]
    want = receptive.receptive_field_at_site(flow, params, 1, (i, j), rng, 4, channel=int(c))
    np.testing.assert_array_equal(rgflow_jax.receptive_field(flow, params, 1, idx, rng, 4), want)
    np.testing.assert_array_equal(receptive.receptive_field(flow, params, 1, idx, rng, 4), want)
  assert rgflow_jax.receptive_field(flow, params, 0, 3).shape == (8, 8)  # default rng, samples
  with pytest.raises(ValueError, match="idx must be in 0.."):
    rgflow_jax.receptive_field(flow, params, 1, len(latents))


def test_receptive_field_matches_finite_differences(x64):
  flow, params = random_flow(8, 1, 4, jnp.float64)
  rng = jax.random.PRNGKey(3)
  rf = receptive.receptive_fields(flow, params, [(2, 4, 0)], rng, n_samples=3)[0]
  z = flow.sample_latents(rng, 3, 1.0, jnp.float64)
  image = jax.jit(lambda v: receptive._image(flow, params, v))
  eps = 1e-6
  dz = jnp.zeros_like(z).at[:, 2, 4, 0].set(eps)
  fd = np.asarray((image(z + dz) - image(z - dz)) / (2 * eps))
  want = np.abs(fd).sum(axis=-1).mean(axis=0)
  np.testing.assert_allclose(rf, want, rtol=1e-3, atol=1e-9)


def test_bad_receptive_field_requests():
  flow = tiny_flow(8, 1, 4)
  params = flow.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="holds a latent of level"):
    receptive.receptive_field_at_site(flow, params, 1, (1, 1), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="level must be"):
    receptive.latent_sites(flow, 5)


def test_params_that_carry_their_flow_jit_and_vmap_over_latent_indices(x64):
  """receptive_field(params, level, idx): the bound form equals the explicit one, and
  is a JAX function of idx (jit; vmap over a level's indices equals the loop)."""
  import rgflow_jax  # noqa: PLC0415
  flow, tree = random_flow(8, 2, 4, jnp.float64)
  params = rgflow_jax.bind(flow, tree)
  n = flow.latents_per_level()[1]
  loop = np.stack([rgflow_jax.receptive_field(flow, tree, 1, i, None, 4) for i in range(n)])
  assert loop.std(axis=0).max() > 0  # the latents' fields differ
  mapped = jax.vmap(lambda i: rgflow_jax.receptive_field(params, 1, i, None, 4))(
      jnp.arange(n))
  assert isinstance(mapped, jax.Array) and mapped.shape == (n, 8, 8)
  np.testing.assert_allclose(mapped, loop, rtol=0, atol=1e-12)
  i, j, c = receptive.latents_of_level(flow, 1)[5]
  np.testing.assert_allclose(
      rgflow_jax.receptive_field_at_site(params, 1, (i, j), None, 4, channel=int(c)),
      loop[5], rtol=0, atol=1e-12)
  jitted = jax.jit(rgflow_jax.receptive_field, static_argnums=(1, 4))
  np.testing.assert_allclose(jitted(params, 1, 5, None, 4), loop[5], rtol=0, atol=1e-12)
  # Differentiable in the params: a gradient of the field's mass.
  grad = jax.grad(lambda p: rgflow_jax.receptive_field(p, 1, 5, None, 4).sum())(params)
  assert isinstance(grad, rgflow_jax.FlowParams)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grad))


def test_a_wrong_first_argument_or_index_is_one_line():
  import rgflow_jax  # noqa: PLC0415
  flow = tiny_flow(8, 1, 4)
  tree = flow.init(jax.random.PRNGKey(0))
  with pytest.raises(TypeError, match=r"needs params that carry their flow, got a dict: "
                                      r"use rgflow_jax.load\(workdir\).params"):
    rgflow_jax.receptive_field(tree, 1, 0)
  params = rgflow_jax.bind(flow, tree)
  with pytest.raises(TypeError, match="idx must be one int.*receptive_field_at_site"):
    rgflow_jax.receptive_field(params, 1, (2, 2))
  with pytest.raises(TypeError, match="level must be an int"):
    rgflow_jax.receptive_field(params, 1.0, 0)
  with pytest.raises(ValueError, match="idx must be in 0.."):
    rgflow_jax.receptive_field(params, 1, -1)
