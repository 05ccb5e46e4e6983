"""The engine on causal cones against the full computation: float64, random
non-identity parameters, L = 16 and 32, regions at the corners, the edges (periodic
wrap) and inside, both layer orders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import CONE_CASES, cone_case, random_flow, square_region
from rgflow_jax.core import cones, local, pixels
from rgflow_jax.paper import latents


@pytest.mark.parametrize("L,C,order,size,positions", CONE_CASES)
def test_local_decode_equals_the_full_decode_in_the_region(x64_module, L, C, order, size,
                                                           positions):
  flow, params, _ = cone_case(L, C, order)
  z = flow.sample_latents(jax.random.PRNGKey(3), 2, 1.0, jnp.float64)
  full, _ = flow.decode(params, z)
  decode = jax.jit(lambda p, cone, zz: local.decode_region(flow, p, cone, zz))
  prepared = local.prepare(flow, params)
  for top, left in positions:
    cone = local.Cone.for_box(flow, top, left, size, size)
    got = decode(prepared, cone, local.cone_latents(cone, z))
    want = full.reshape(2, L * L, C)[:, cone.pixels]
    assert float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _paste(image, pixel_sites, new_pixels):
  L, C = image.shape[1], image.shape[3]
  flat = jnp.asarray(image).reshape(1, L * L, C)
  return flat.at[:, pixel_sites].set(new_pixels).reshape(-1, L, L, C)


# One case per layer order; the decode test above takes L = 32 in both.
@pytest.mark.parametrize("L,C,order,size,positions", [CONE_CASES[0], CONE_CASES[1]])
def test_local_change_of_log_likelihood_and_its_gradient_equal_the_full(
    x64_module, L, C, order, size, positions):
  flow, params, image = cone_case(L, C, order)
  full_lp = jax.jit(lambda p, x: flow.log_prob_pixels(p, x))
  base_lp = full_lp(params, image)
  z0 = latents.encode_jit(flow, params, pixels.to_flow(jnp.asarray(image))[0])[0]
  prepared = local.prepare(flow, params)  # once, as inpainting does

  def local_objective(zf, cone, cache):
    x = pixels.from_flow(local.decode_region(flow, prepared, cone, zf))
    return local.delta_log_prob(flow, prepared, cone, cache, x)[0]

  def full_objective(zf, cone):
    zz = local.with_cone_latents(cone, z0, zf)
    x_gen = pixels.from_flow(flow.decode(params, zz)[0]).reshape(1, L * L, C)
    x = _paste(image, cone.pixels, x_gen[:, cone.pixels])
    return flow.log_prob_pixels(params, x)[0] - base_lp[0]

  local_fn = jax.jit(jax.value_and_grad(local_objective))
  full_fn = jax.jit(jax.value_and_grad(full_objective))
  for n, (top, left) in enumerate(positions):
    cone = local.Cone.for_box(flow, top, left, size, size)
    cache = local.cache_baseline(flow, params, cone, image)
    np.testing.assert_allclose(cache.log_prob, base_lp, rtol=1e-12)
    z_free = local.cone_latents(cone, z0) + 0.3 * jax.random.normal(
        jax.random.PRNGKey(n), (1, cone.plan.n_cone, C))
    got, g_got = local_fn(z_free, cone, cache)
    want, g_want = full_fn(z_free, cone)
    assert abs(float(want)) > 1e-2 and float(jnp.abs(g_want).max()) > 1e-2
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(g_got, g_want, rtol=1e-10,
                               atol=1e-10 * float(jnp.abs(g_want).max()))


@pytest.mark.parametrize("L,C,order,size,positions", [
    (16, 1, "paper", 1, [(0, 0), (15, 7), (4, 12)]),
    (32, 3, "authors", 3, [(30, 31), (8, 16)]),
])
def test_latent_edits_recompute_only_the_generation_cone(x64_module, L, C, order, size,
                                                         positions):
  flow, params, _ = cone_case(L, C, order, seed=2)
  z = flow.sample_latents(jax.random.PRNGKey(5), 2, 1.0, jnp.float64)
  edit = jax.jit(lambda p, cone, cache, zz: local.edit_latents(flow, p, cone, cache, zz))
  prepared = local.prepare(flow, params)
  for top, left in positions:
    cone = local.Cone.for_latent_box(flow, top, left, size, size)
    cache = local.cache_decode(flow, params, cone, z)
    box = square_region(L, top, left, size)[None, :, :, None]
    z_new = jnp.where(box, z + jax.random.normal(jax.random.PRNGKey(top), z.shape), z)
    got = edit(prepared, cone, cache, z_new)
    want, _ = flow.decode(params, z_new)
    assert float(jnp.abs(want - cache.image).max()) > 1e-2  # the edit shows
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("L,C,order", [(16, 1, "paper"), (32, 2, "authors")])
def test_an_edit_at_one_site_computes_its_levels_cone_and_equals_the_full_decode(
    x64_module, L, C, order):
  flow, params, _ = cone_case(L, C, order, seed=3)
  z = flow.sample_latents(jax.random.PRNGKey(6), 1, 1.0, jnp.float64)
  edit = jax.jit(lambda p, cone, cache, zz: local.edit_latents(flow, p, cone, cache, zz))
  prepared = local.prepare(flow, params)
  levels = flow.level_of_site()
  rng = np.random.default_rng(L)
  for level in range(flow.num_levels):
    sites = np.argwhere(levels == level)
    for i, j in sites[rng.choice(len(sites), min(3, len(sites)), replace=False)]:
      cone = local.Cone.for_latent_site(flow, int(i), int(j))
      assert cone.plan.site_level == level
      assert all(st.n_blocks == 0 for st in cone.plan.stages if st.level > level)
      pixels_out = np.zeros(L * L, bool)
      pixels_out[cone.out_sites[cone.out_sites < L * L]] = True
      # what it recomputes holds the site's generation cone (the product of the two
      # axes' cones may hold more: exact values all the same)
      assert (pixels_out.reshape(L, L) >= cones.generation_cone(
          flow.geometry, level, (int(i), int(j)))).all()
      cache = local.cache_decode(flow, params, cone, z)
      z_new = z.at[:, i, j, :].add(1.5)
      want, _ = flow.decode(params, z_new)
      np.testing.assert_allclose(edit(prepared, cone, cache, z_new), want, rtol=0,
                                 atol=1e-12)
  assert edit._cache_size() == flow.num_levels  # one program per level


def test_functions_on_a_cone_take_prepared_parameters_only():
  flow, params = random_flow(16, 1, 4, seed=0)
  cone = local.Cone.for_box(flow, 0, 0, 2, 2)
  z = jnp.zeros((1, cone.plan.n_cone, 1))
  with pytest.raises(TypeError, match=r"pass local.prepare\(flow, params\), made once"):
    local.decode_region(flow, params, cone, z)
  prepared = local.prepare(flow, params)
  with pytest.raises(TypeError, match="prepared already"):
    local.prepare(flow, prepared)
  assert local.decode_region(flow, prepared, cone, z).shape == (1, 4, 1)
