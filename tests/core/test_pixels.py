"""The pixel transform: its round trip and log-det, dequantisation within the bin, every
uint8 value back from its bin centre."""

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import pixels


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
