import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from conftest import tiny_flow
from rgflow_jax import pixels, priors


@pytest.mark.parametrize("t", [1.0, 0.5, 2.3])
def test_prior_log_densities_match_scipy(x64, t):
  z = jnp.linspace(-4, 4, 41, dtype=jnp.float64)
  np.testing.assert_allclose(priors.log_density("laplace", z, t),
                             stats.laplace(scale=t / math.sqrt(2)).logpdf(z), rtol=1e-12)
  np.testing.assert_allclose(priors.log_density("gaussian", z, t),
                             stats.norm(scale=t).logpdf(z), rtol=1e-12)


@pytest.mark.parametrize("name", priors.PRIORS)
def test_prior_samples_have_the_temperature_as_std(name):
  z = priors.sample(name, jax.random.PRNGKey(0), (200_000,), temperature=0.6)
  assert abs(float(jnp.std(z)) - 0.6) < 0.01
  kurt = stats.kurtosis(np.asarray(z))
  assert abs(kurt - (3.0 if name == "laplace" else 0.0)) < 0.3


def test_pixel_transform_round_trip_and_log_det(x64):
  x = jnp.linspace(0.001, 0.999, 24, dtype=jnp.float64).reshape(1, 2, 4, 3)
  y, ld = pixels.to_flow(x)
  np.testing.assert_allclose(pixels.from_flow(y), x, atol=1e-12)
  grad = jax.vmap(jax.grad(lambda v: pixels.to_flow(v.reshape(1, 1, 1, 1))[0].sum()))(
      x.reshape(-1))
  np.testing.assert_allclose(ld[0], np.log(np.asarray(grad)).sum(), rtol=1e-12)


def test_dequantized_pixels_stay_in_their_bin():
  u = jnp.arange(256, dtype=jnp.uint8).reshape(1, 16, 16, 1)
  x = pixels.dequantize(jax.random.PRNGKey(0), u)
  assert ((x * 256 >= u) & (x * 256 < u.astype(jnp.float32) + 1)).all()
  np.testing.assert_array_equal(pixels.to_uint8(x), u)


@pytest.mark.parametrize("prior", priors.PRIORS)
def test_bits_per_dim_of_the_identity_flow_is_the_closed_form(x64, prior):
  flow = tiny_flow(8, 3, 4, prior=prior)
  params = flow.init(jax.random.PRNGKey(0), jnp.float64)
  u = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3))
  rng = jax.random.PRNGKey(7)
  bpd = flow.bits_per_dim(params, u, rng)
  # By hand: identity flow, so z = logit(0.05 + 0.9 x).
  noise = np.asarray(jax.random.uniform(rng, u.shape, jnp.float64))
  x = (u + noise) / 256.0
  p = 0.05 + 0.9 * x
  z = np.log(p / (1 - p))
  if prior == "laplace":
    b = 1 / math.sqrt(2)
    log_pz = -np.abs(z) / b - np.log(2 * b)
  else:
    log_pz = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
  log_px = (log_pz + np.log(0.9) - np.log(p) - np.log(1 - p)).sum(axis=(1, 2, 3))
  expected = (-log_px / (8 * 8 * 3) + np.log(256)) / np.log(2)
  np.testing.assert_allclose(bpd, expected, rtol=1e-12)
