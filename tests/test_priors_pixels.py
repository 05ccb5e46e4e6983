import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rgflow_jax.core import pixels, priors


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


def test_every_uint8_value_comes_back_from_its_bin_centre():
  u8 = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
  x = pixels.from_uint8(u8)
  assert x.dtype == np.float32 and x.min() > 0 and x.max() < 1
  np.testing.assert_array_equal(x, (u8.astype(np.float32) + 0.5) / 256)
  back = pixels.to_uint8_numpy(x)
  assert isinstance(back, np.ndarray) and back.dtype == np.uint8
  np.testing.assert_array_equal(back, u8)
