"""The RG-Flow bijection: invertibility, exact log-dets, locality, identity at init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_flow, tiny_flow
from rgflow_jax import RGFlow, cones

ROUND_TRIP_SHAPES = [(8, 1, 4), (16, 3, 4), (32, 3, 4), (16, 2, 2)]


def _images(flow, n, dtype, seed=3):
  return 1.5 * jax.random.normal(jax.random.PRNGKey(seed), (n,) + flow.event_shape, dtype)


@pytest.mark.parametrize("L,C,k", ROUND_TRIP_SHAPES)
def test_round_trip_float32(L, C, k):
  flow, params = random_flow(L, C, k, jnp.float32)
  x = _images(flow, 3, jnp.float32)
  z, ld_enc = jax.jit(flow.encode)(params, x)
  x_back, ld_dec = jax.jit(flow.decode)(params, z)
  assert z.dtype == jnp.float32 and x_back.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(z - x))) > 0.1  # really not the identity
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-4
  np.testing.assert_allclose(ld_dec, -ld_enc, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("L,C,k", ROUND_TRIP_SHAPES)
def test_round_trip_float64(x64, L, C, k):
  flow, params = random_flow(L, C, k, jnp.float64)
  x = _images(flow, 3, jnp.float64)
  z, _ = jax.jit(flow.encode)(params, x)
  x_back, _ = jax.jit(flow.decode)(params, z)
  assert z.dtype == jnp.float64
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-10


@pytest.mark.parametrize("L,C,k", [(8, 1, 4), (8, 2, 2)])
def test_log_det_equals_slogdet_of_jacobian(x64, L, C, k):
  flow, params = random_flow(L, C, k, jnp.float64, n_layers=2)
  x = _images(flow, 1, jnp.float64)
  flat = lambda v: flow.encode(params, v.reshape(x.shape))[0].reshape(-1)
  jac = jax.jit(jax.jacfwd(flat))(x.reshape(-1))
  sign, logabs = jnp.linalg.slogdet(jac)
  z, ld_enc = jax.jit(flow.encode)(params, x)
  assert sign != 0
  assert abs(float(ld_enc[0]) - float(logabs)) <= 1e-8
  assert abs(float(ld_enc[0])) > 1.0  # a non-trivial volume change
  # decode's log-det at the matching point z is minus encode's.
  _, ld_dec = jax.jit(flow.decode)(params, z)
  assert abs(float(ld_dec[0]) + float(ld_enc[0])) <= 1e-8
  # and equals slogdet of decode's own Jacobian.
  flat_dec = lambda v: flow.decode(params, v.reshape(z.shape))[0].reshape(-1)
  _, logabs_dec = jnp.linalg.slogdet(jax.jit(jax.jacfwd(flat_dec))(z.reshape(-1)))
  assert abs(float(ld_dec[0]) - float(logabs_dec)) <= 1e-8


@pytest.mark.parametrize("L,C,k", [(16, 1, 4), (8, 2, 2)])
def test_encode_jacobian_lives_in_the_structural_cone(x64, L, C, k):
  flow, params = random_flow(L, C, k, jnp.float64, n_layers=2)
  x = _images(flow, 1, jnp.float64)
  flat = lambda v: flow.encode(params, v.reshape(x.shape))[0].reshape(-1)
  jac = np.asarray(jax.jit(jax.jacfwd(flat))(x.reshape(-1)))
  # Site-level support: sum |d z[site, c] / d x[pixel, c']| over both channel axes.
  site_jac = np.abs(jac.reshape(L * L, C, L * L, C)).sum(axis=(1, 3))
  support = site_jac > 0
  cone = cones.dependency_matrix(flow)
  assert not cone.all()  # the cone is a real restriction...
  assert not support[~cone].any()  # ...that the Jacobian respects,
  assert support[cone].mean() > 0.99  # and fills.


def test_fresh_init_is_the_identity():
  flow = tiny_flow(16, 3, 4)
  params = flow.init(jax.random.PRNGKey(0))
  x = _images(flow, 2, jnp.float32)
  z, ld = jax.jit(flow.encode)(params, x)
  np.testing.assert_array_equal(np.asarray(z), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(ld), 0.0)
  x_back, ld_dec = jax.jit(flow.decode)(params, x)
  np.testing.assert_array_equal(np.asarray(x_back), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(ld_dec), 0.0)


def test_shared_levels_share_one_parameter_set():
  flow, params = random_flow(16, 1, 4, share_levels=True)
  assert list(params) == ["shared"]
  x = _images(flow, 2, jnp.float32)
  z, _ = jax.jit(flow.encode)(params, x)
  x_back, _ = jax.jit(flow.decode)(params, z)
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-4
  unshared = tiny_flow(16, 1, 4)
  n_unshared = unshared.num_params(unshared.init(jax.random.PRNGKey(0)))
  assert flow.num_params(params) * unshared.num_levels == n_unshared


def test_per_level_sizes():
  flow = tiny_flow(16, 1, 4, n_layers=(3, 1, 2), hidden=(8, 16, 4), mlp_depth=(1, 2, 1))
  params = flow.init(jax.random.PRNGKey(0))
  assert params["level0"]["dis"]["scale"].shape == (3, 2, 16)
  assert params["level1"]["dec"]["layers"][1]["v"].shape == (1, 2, 1, 16, 16)
  assert len(params["level2"]["dec"]["layers"]) == 2


def test_jit_and_eager_agree():
  flow, params = random_flow(16, 3, 4)
  x = _images(flow, 2, jnp.float32)
  z_eager, ld_eager = flow.encode(params, x)
  z_jit, ld_jit = jax.jit(flow.encode)(params, x)
  np.testing.assert_allclose(z_jit, z_eager, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ld_jit, ld_eager, rtol=1e-5, atol=1e-4)
  u = jax.random.randint(jax.random.PRNGKey(1), (2,) + flow.event_shape, 0, 256)
  rng = jax.random.PRNGKey(2)
  np.testing.assert_allclose(jax.jit(flow.bits_per_dim)(params, u, rng),
                             flow.bits_per_dim(params, u, rng), rtol=1e-5)


@pytest.mark.parametrize("method", ["encode", "decode", "log_prob"])
def test_wrong_shape_is_a_value_error_naming_the_expected_shape(method):
  flow = tiny_flow(8, 1, 4)
  params = flow.init(jax.random.PRNGKey(0))
  for bad in [jnp.zeros((2, 8, 8, 3)), jnp.zeros((8, 8, 1)), jnp.zeros((2, 1, 8, 8))]:
    with pytest.raises(ValueError, match=r"\(batch, 8, 8, 1\)"):
      getattr(flow, method)(params, bad)
  with pytest.raises(ValueError, match=r"\(batch, 8, 8, 1\)"):
    jax.jit(flow.encode)(params, jnp.zeros((2, 16, 16, 1)))


def test_sample_shapes_and_zero_temperature():
  flow, params = random_flow(16, 3, 4)
  sample = jax.jit(flow.sample, static_argnums=2)
  imgs = sample(params, jax.random.PRNGKey(0), 5, 0.7)
  assert imgs.shape == (5, 16, 16, 3)
  assert float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0
  cold = sample(params, jax.random.PRNGKey(0), 2, 0.0)
  mode, _ = jax.jit(flow.decode)(params, jnp.zeros((1, 16, 16, 3)))
  from rgflow_jax import pixels
  np.testing.assert_allclose(cold, jnp.broadcast_to(pixels.from_flow(mode), cold.shape),
                             atol=1e-6)
  # A temperature per level: level 0 cold, the rest warm, changes only the warm sites.
  z = flow.sample_latents(jax.random.PRNGKey(1), 1, temperature=[0.0, 1.0, 1.0])
  lvl = flow.level_of_site()
  assert (np.asarray(z)[0][lvl == 0] == 0).all()
  assert (np.asarray(z)[0][lvl > 0] != 0).all()
  with pytest.raises(ValueError, match="one per level"):
    flow.sample_latents(jax.random.PRNGKey(1), 1, temperature=[1.0, 1.0])


def test_paper_celeba_model_initialises_with_the_reference_parameter_count():
  flow = RGFlow(image_size=32, channels=3, block_size=4, n_layers=(8, 6, 4, 2),
                n_res=4, hidden=512, mlp_depth=2)
  params = flow.init(jax.random.PRNGKey(0))
  assert flow.num_params(params) == 100_647_680
  assert all(np.isfinite(np.asarray(l)).all() for l in jax.tree.leaves(params))


@pytest.mark.parametrize("kw,count", [
    (dict(n_layers=4, n_res=4, hidden=512, mlp_depth=2), 80_518_144),  # paper MSDS
    (dict(n_layers=1, n_res=1, hidden=32, mlp_depth=1), 53_760),  # issue 6 "tiny"
    (dict(n_layers=2, n_res=1, hidden=128, mlp_depth=2), 948_224),  # issue 6 "small"
])
def test_parameter_counts_match_the_authors_code(kw, count):
  flow = RGFlow(**kw)
  shapes = jax.eval_shape(flow.init, jax.random.PRNGKey(0))
  assert flow.num_params(shapes) == count


def test_remat_changes_memory_not_results():
  flow, params = random_flow(8, 3, 4)
  flow_remat = tiny_flow(8, 3, 4, remat=True)
  x = _images(flow, 2, jnp.float32)
  loss = lambda f: jax.jit(jax.value_and_grad(lambda p: jnp.mean(f.log_prob(p, x))))
  (v1, g1), (v2, g2) = loss(flow)(params), loss(flow_remat)(params)
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
