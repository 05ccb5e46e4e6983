"""Local inference on causal cones against the full computation: float64, random
non-identity parameters, L = 16 and 32, regions at the corners, the edges (periodic
wrap) and inside, both layer orders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_flow, square_region, tiny_flow
from rgflow_jax.core import cones, local, pixels
from rgflow_jax.paper import inpainting, latents

# (L, C, layer order, region size, positions (top, left))
CASES = [
    (16, 1, "paper", 3, [(0, 0), (14, 14), (5, 9)]),
    (16, 2, "authors", 4, [(13, 0), (6, 6)]),
    (32, 3, "paper", 10, [(0, 0), (27, 3), (11, 20)]),
    (32, 1, "authors", 10, [(30, 30), (4, 17)]),
]


@pytest.fixture(scope="module")
def x64_module():
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", old)


def _setup(L, C, order, seed=0):
  flow, params = random_flow(L, C, 4, jnp.float64, seed=seed, layer_order=order,
                             hidden=8)
  rng = np.random.default_rng(seed)
  image = rng.uniform(0.02, 0.98, (1, L, L, C))
  return flow, params, image



@pytest.mark.parametrize("L,C,order,size,positions", CASES)
def test_the_tables_hold_the_inference_cone(L, C, order, size, positions):
  flow = tiny_flow(L, C, 4, layer_order=order)
  for top, left in positions:
    cone = local.Cone.for_box(flow, top, left, size, size)
    sites = np.zeros(L * L, bool)
    for tab in cone.stages:
      sites[tab.image_sites[tab.holds_latent & tab.real[:, None]]] = True
    want = cones.inference_cone(flow.geometry, square_region(L, top, left, size))
    np.testing.assert_array_equal(sites.reshape(L, L), want)
    assert cone.n_latents == int(want.sum())
  # One program for every position: the same static plan and padded shapes.
  structures = {jax.tree.structure(local.Cone.for_box(flow, i, j, size, size))
                for i in range(0, L, 3) for j in range(0, L, 5)}
  shapes = {tuple(x.shape for x in jax.tree.leaves(local.Cone.for_box(flow, i, j, size, size)))
            for i in range(0, L, 3) for j in range(0, L, 5)}
  assert len(structures) == 1 and len(shapes) == 1


@pytest.mark.parametrize("L,C,order,size,positions", CASES)
def test_local_decode_equals_the_full_decode_in_the_region(x64_module, L, C, order, size,
                                                           positions):
  flow, params, _ = _setup(L, C, order)
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
@pytest.mark.parametrize("L,C,order,size,positions", [CASES[0], CASES[1]])
def test_local_change_of_log_likelihood_and_its_gradient_equal_the_full(
    x64_module, L, C, order, size, positions):
  flow, params, image = _setup(L, C, order)
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


@pytest.mark.e2e  # the whole inpainting path twice (the engine's exactness is above)
@pytest.mark.parametrize("L,C,order,top,left,size", [(16, 2, "authors", 14, 2, 4)])
def test_local_inpainting_ends_at_the_latents_of_the_full_path(x64_module, L, C, order, top,
                                                               left, size):
  """Same starts, same Adam steps: the local objective differs from the full one by a
  constant, so both paths pick the same start and end at the same latents."""
  flow, params, image = _setup(L, C, order, seed=4)
  region = square_region(L, top, left, size)
  rng = np.random.default_rng(1)
  corrupted = np.where(region[..., None], rng.uniform(size=image.shape[1:]), image[0])
  args = (flow, params, corrupted, region, jax.random.PRNGKey(7))
  kw = dict(n_starts=6, steps=12, lr=0.05, truth=image[0])
  x_loc, loc = inpainting.inpaint(*args, **kw)  # local is the default for RG-Flow's cone
  x_full, full = inpainting.inpaint(*args, on_cone=False, **kw)
  moved = np.abs(np.asarray(full["z"]) - np.asarray(latents.encode_jit(
      flow, params, pixels.to_flow(jnp.asarray(corrupted)[None])[0])[0][0])).max()
  assert moved > 0.1  # the free latents did move
  np.testing.assert_allclose(loc["z"], full["z"], rtol=0, atol=1e-9)
  np.testing.assert_allclose(x_loc, x_full, rtol=0, atol=1e-9)
  np.testing.assert_allclose(loc["neg_log_lik"], full["neg_log_lik"], rtol=1e-10)
  assert loc["psnr"] == pytest.approx(full["psnr"], rel=1e-9)
  with pytest.raises(ValueError, match="local inpainting computes on RG-Flow's cone"):
    inpainting.inpaint(*args, free="all", on_cone=True, **kw)


@pytest.mark.parametrize("L,C,order,size,positions", [
    (16, 1, "paper", 1, [(0, 0), (15, 7), (4, 12)]),
    (32, 3, "authors", 3, [(30, 31), (8, 16)]),
])
def test_latent_edits_recompute_only_the_generation_cone(x64_module, L, C, order, size,
                                                         positions):
  flow, params, _ = _setup(L, C, order, seed=2)
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


def test_an_edit_of_a_fine_latent_touches_a_few_blocks():
  flow = tiny_flow(32, 3, 4)
  cone = local.Cone.for_latent_box(flow, 1, 1, 1, 1)  # a level-0 latent
  real = sum(int(t.real.sum()) for t in cone.stages)
  every = 2 * sum(flow.geometry.blocks_per_side(h) ** 2 for h in range(flow.num_levels))
  assert real == 1 + 4 and every == 170  # one decimator block, the 4 disentanglers it meets


def test_globally_connected_flows_and_oversized_regions_are_refused():
  from helpers import tiny_realnvp  # noqa: PLC0415
  with pytest.raises(ValueError, match="RealNVP is globally connected"):
    local.Cone.for_box(tiny_realnvp(8, 1), 0, 0, 2, 2)
  with pytest.raises(ValueError, match="does not fit a 16 x 16 image"):
    local.Cone.for_latent_box(tiny_flow(16, 1, 4), 0, 0, 17, 2)
  with pytest.raises(ValueError, match="non-empty"):
    local.bounding_box(np.zeros((16, 16), bool))
  region = np.zeros((16, 16), bool)
  region[np.ix_([15, 0, 1], [14, 15, 0])] = True  # across both periodic edges
  assert local.bounding_box(region) == (15, 14, 3, 3)


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
