"""Bijection tests shared by every model of the registry (RG-Flow and Real NVP):
invertibility, exact log-dets, identity at init, input checks, sampling."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import MODEL_ZOO, zoo_flow
from rgflow_jax.core import pixels, registry
from rgflow_jax.core.execution import Execution

# (model, image size, channels, extra model fields)
# (L = 16 adds nothing that 8 and 32 do not hold: one level more than 8, one less than 32.)
ROUND_TRIP = [
    ("rgflow", 8, 1, {}), ("rgflow", 32, 3, {}), ("rgflow", 16, 2, {"block_size": 2}),
    ("realnvp", 8, 1, {}), ("realnvp", 32, 3, {}), ("realnvp", 8, 2, {"num_scales": 2}),
]
JACOBIAN = [
    ("rgflow", 8, 1, {}), ("rgflow", 8, 2, {"block_size": 2}),
    ("realnvp", 8, 1, {}), ("realnvp", 8, 2, {"num_scales": 2}),
]


def _ids(cases):
  return [f"{name}-L{L}-C{C}" + "".join(f"-{k}{v}" for k, v in kw.items())
          for name, L, C, kw in cases]


def _images(flow, n, dtype, seed=3):
  return 1.5 * jax.random.normal(jax.random.PRNGKey(seed), (n,) + flow.event_shape, dtype)


def test_the_registry_is_what_configs_can_name():
  assert set(MODEL_ZOO) == set(registry.MODELS)
  with pytest.raises(ValueError, match="config.model.name must be one of"):
    registry.build({"name": "glow"})


@pytest.mark.parametrize("name,L,C,kw", ROUND_TRIP, ids=_ids(ROUND_TRIP))
def test_round_trip_float32(name, L, C, kw):
  flow, params = zoo_flow(name, L, C, jnp.float32, **kw)
  x = _images(flow, 3, jnp.float32)
  z, ld_enc = jax.jit(flow.encode)(params, x)
  x_back, ld_dec = jax.jit(flow.decode)(params, z)
  assert z.shape == x.shape and z.dtype == jnp.float32 and x_back.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(z - x))) > 0.1  # really not the identity
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-4
  np.testing.assert_allclose(ld_dec, -ld_enc, rtol=1e-4, atol=1e-3)


# float64 at 8 x 8 and the other block shapes: larger images add compile time, not
# coverage (float32 has them).
ROUND_TRIP_F64 = [case for case in ROUND_TRIP if case[1] == 8 or case[3]]


@pytest.mark.parametrize("name,L,C,kw", ROUND_TRIP_F64, ids=_ids(ROUND_TRIP_F64))
def test_round_trip_float64(x64, name, L, C, kw):
  flow, params = zoo_flow(name, L, C, jnp.float64, **kw)
  x = _images(flow, 3, jnp.float64)
  z, _ = jax.jit(flow.encode)(params, x)
  x_back, _ = jax.jit(flow.decode)(params, z)
  assert z.dtype == jnp.float64
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-10


@pytest.mark.parametrize("name,L,C,kw", JACOBIAN, ids=_ids(JACOBIAN))
def test_log_det_equals_slogdet_of_jacobian(x64, name, L, C, kw):
  flow, params = zoo_flow(name, L, C, jnp.float64, **kw)
  x = _images(flow, 1, jnp.float64)
  flat = lambda v: flow.encode(params, v.reshape(x.shape))[0].reshape(-1)
  jac = jax.jit(jax.jacfwd(flat))(x.reshape(-1))
  sign, logabs = jnp.linalg.slogdet(jac)
  z, ld_enc = jax.jit(flow.encode)(params, x)
  assert sign != 0
  assert abs(float(ld_enc[0]) - float(logabs)) <= 1e-8
  # A non-trivial map: far from the identity, with a volume change (the log-det is a sum
  # of terms of either sign, so it can be small for a map far from the identity).
  assert float(jnp.abs(jac - jnp.eye(jac.shape[0])).max()) > 0.5
  assert abs(float(ld_enc[0])) > 0.1
  # decode's log-det at the matching point z is minus encode's,
  _, ld_dec = jax.jit(flow.decode)(params, z)
  assert abs(float(ld_dec[0]) + float(ld_enc[0])) <= 1e-8
  # and equals slogdet of decode's own Jacobian.
  flat_dec = lambda v: flow.decode(params, v.reshape(z.shape))[0].reshape(-1)
  _, logabs_dec = jnp.linalg.slogdet(jax.jit(jax.jacfwd(flat_dec))(z.reshape(-1)))
  assert abs(float(ld_dec[0]) - float(logabs_dec)) <= 1e-8


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_log_prob_is_the_change_of_variables_with_random_parameters(x64, name):
  """log p(y) = log p_prior(z) + log|det dz/dy| with z = encode(y), both terms from
  outside the model: scipy's densities of z, and slogdet of encode's Jacobian."""
  from scipy import stats  # noqa: PLC0415
  flow, params = zoo_flow(name, 8, 1, jnp.float64)
  y = _images(flow, 2, jnp.float64)
  z = np.asarray(jax.jit(flow.encode)(params, y)[0])
  flat = lambda v: flow.encode(params, v.reshape((1,) + y.shape[1:]))[0].reshape(-1)  # noqa: E731
  jac = jax.jit(jax.jacfwd(flat))
  logabs = np.array([np.linalg.slogdet(np.asarray(jac(y[i].reshape(-1))))[1] for i in range(2)])
  assert (np.abs(logabs) > 1.0).all()  # the parameters move the volume: a sign error shows
  for prior, density in [("laplace", stats.laplace(scale=1 / np.sqrt(2))),
                         ("gaussian", stats.norm())]:
    got = np.asarray(jax.jit(dataclasses.replace(flow, prior=prior).log_prob)(params, y))
    want = density.logpdf(z).reshape(2, -1).sum(axis=1) + logabs
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_fresh_init_is_the_identity(name):
  flow = MODEL_ZOO[name][0](16, 3)
  params = flow.init(jax.random.PRNGKey(0))
  x = _images(flow, 2, jnp.float32)
  z, ld = jax.jit(flow.encode)(params, x)
  np.testing.assert_array_equal(np.asarray(z), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(ld), 0.0)
  x_back, ld_dec = jax.jit(flow.decode)(params, x)
  np.testing.assert_array_equal(np.asarray(x_back), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(ld_dec), 0.0)


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_levels_cover_every_latent_once(name):
  flow = MODEL_ZOO[name][0](16, 3)
  levels = flow.level_of_site()
  assert levels.shape == (16, 16) and set(np.unique(levels)) == set(range(flow.num_levels))
  counts = flow.latents_per_level()
  assert sum(counts) == flow.num_dims and all(c > 0 for c in counts)
  assert list(counts) == [int((levels == h).sum()) * 3 for h in range(flow.num_levels)]


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
@pytest.mark.parametrize("method", ["encode", "decode", "log_prob"])
def test_wrong_shape_is_a_value_error_naming_the_expected_shape(name, method):
  flow = MODEL_ZOO[name][0](8, 1)
  params = flow.init(jax.random.PRNGKey(0))
  for bad in [jnp.zeros((2, 8, 8, 3)), jnp.zeros((8, 8, 1)), jnp.zeros((2, 1, 8, 8))]:
    with pytest.raises(ValueError, match=r"\(batch, 8, 8, 1\)"):
      getattr(flow, method)(params, bad)
  with pytest.raises(ValueError, match=r"\(batch, 8, 8, 1\)"):
    jax.jit(flow.encode)(params, jnp.zeros((2, 16, 16, 1)))


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_sample_shapes_and_zero_temperature(name):
  flow, params = zoo_flow(name, 16, 3)
  sample = jax.jit(flow.sample, static_argnums=2)
  imgs = sample(params, jax.random.PRNGKey(0), 5, 0.7)
  assert imgs.shape == (5, 16, 16, 3)
  assert float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0
  cold = sample(params, jax.random.PRNGKey(0), 2, 0.0)
  mode, _ = jax.jit(flow.decode)(params, jnp.zeros((1, 16, 16, 3)))
  np.testing.assert_allclose(cold, jnp.broadcast_to(pixels.from_flow(mode), cold.shape),
                             atol=1e-6)
  # A temperature per level: level 0 cold, the rest warm, changes only the warm sites.
  temps = [0.0] + [1.0] * (flow.num_levels - 1)
  z = flow.sample_latents(jax.random.PRNGKey(1), 1, temperature=temps)
  lvl = flow.level_of_site()
  assert (np.asarray(z)[0][lvl == 0] == 0).all()
  assert (np.asarray(z)[0][lvl > 0] != 0).all()
  with pytest.raises(ValueError, match="one per level"):
    flow.sample_latents(jax.random.PRNGKey(1), 1, temperature=[1.0, 1.0])


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
@pytest.mark.parametrize("prior", ["laplace", "gaussian"])
def test_bits_per_dim_of_the_identity_flow_is_the_closed_form(x64, name, prior):
  """With identity params, log p(x) = sum log p_prior(logit(x')) + the pixel log-det."""
  flow = MODEL_ZOO[name][0](8, 1, prior=prior)
  params = flow.init(jax.random.PRNGKey(0), jnp.float64)
  u = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1))
  rng = jax.random.PRNGKey(5)
  x = np.asarray(pixels.dequantize(rng, u, jnp.float64))
  p = pixels.ALPHA + (1 - 2 * pixels.ALPHA) * x
  y = np.log(p) - np.log1p(-p)
  if prior == "laplace":
    b = 1 / np.sqrt(2)
    lp = -np.abs(y) / b - np.log(2 * b)
  else:
    lp = -0.5 * y ** 2 - 0.5 * np.log(2 * np.pi)
  lp = lp + np.log(1 - 2 * pixels.ALPHA) - np.log(p) - np.log1p(-p)
  want = (-lp.reshape(2, -1).mean(axis=1) + np.log(256)) / np.log(2)
  np.testing.assert_allclose(flow.bits_per_dim(params, u, rng), want, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_remat_changes_memory_not_results(name):
  flow, params = zoo_flow(name, 8, 3)
  x = _images(flow, 2, jnp.float32)
  loss = lambda ex: jax.jit(jax.value_and_grad(  # noqa: E731
      lambda p: jnp.mean(flow.log_prob(p, x, ex))))
  (v1, g1), (v2, g2) = loss(None)(params), loss(Execution(remat=True))(params)
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  chex.assert_trees_all_close(g1, g2, rtol=1e-4, atol=1e-5)
