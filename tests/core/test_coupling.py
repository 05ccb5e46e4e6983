"""The RNVP block's definition: decode inverts encode, the log-det is the Jacobian's,
and the mask leaves each half-coupling's conditioning half unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import perturb
from rgflow_jax.core import coupling


def _block(k, c, n_layer, n_res, depth, seed=0):
  params = coupling.init_block(jax.random.PRNGKey(seed), n_layer, k * k * c, 6, depth, n_res,
                               jnp.float64)
  params = perturb(params, jax.random.PRNGKey(seed + 1), 0.3)
  x = jax.random.normal(jax.random.PRNGKey(seed + 2), (k, k, c), jnp.float64)
  return params, x


def test_checkerboard_is_one_where_a_plus_b_is_even_in_every_channel():
  m = coupling.checkerboard(4, 3).reshape(4, 4, 3)
  a, b = np.indices((4, 4))
  for c in range(3):
    np.testing.assert_array_equal(m[..., c], (a + b) % 2 == 0)


@pytest.mark.parametrize("k,c,n_layer,n_res,depth", [(4, 3, 2, 2, 2), (2, 1, 3, 1, 1)])
def test_decode_inverts_encode_and_log_dets_are_the_jacobians(x64, k, c, n_layer, n_res,
                                                              depth):
  params, x = _block(k, c, n_layer, n_res, depth)
  y, ld = coupling.encode_block(params, x)
  assert float(jnp.abs(y - x).max()) > 0.1  # a real transformation
  x_back, ld_inv = coupling.decode_block(params, y)
  np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-12)
  np.testing.assert_allclose(ld_inv, -ld, rtol=0, atol=1e-12)
  jac = jax.jacfwd(lambda v: coupling.encode_block(params, v.reshape(x.shape))[0].reshape(-1))
  sign, logabs = np.linalg.slogdet(np.asarray(jac(x.reshape(-1))))
  assert sign != 0
  np.testing.assert_allclose(ld, logabs, rtol=1e-12, atol=1e-12)


def test_each_half_coupling_keeps_its_conditioning_half(x64):
  params, x = _block(4, 2, 1, 1, 1)
  mask = jnp.asarray(coupling.checkerboard(4, 2))
  layer = jax.tree.map(lambda a: a[0], params)
  v = x.reshape(-1)
  s, t = coupling._s_and_t(layer, v, mask)
  np.testing.assert_array_equal(np.asarray(s)[np.asarray(mask) == 1], 0.0)
  np.testing.assert_array_equal(np.asarray(t)[np.asarray(mask) == 1], 0.0)
  # The conditioning half is all the networks see: changing the free half changes nothing.
  s2, t2 = coupling._s_and_t(layer, v + 5.0 * (1 - mask), mask)
  np.testing.assert_allclose(s2, s, rtol=0, atol=0)
  np.testing.assert_allclose(t2, t, rtol=0, atol=0)
  assert float(jnp.abs(s).max()) > 1e-3 and float(jnp.abs(t).max()) > 1e-3
