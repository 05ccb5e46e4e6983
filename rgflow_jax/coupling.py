"""The RNVP block: the bijector that acts inside one k x k x C block.

One RNVP layer is two affine half-couplings under a checkerboard mask ``m`` (1 where
a + b is even, the same for every channel) that share ONE pair of networks s, t:

    y  = x * exp(s(m x)) + t(m x),           s, t vanish where m = 1
    y' = y * exp(s((1-m) y)) + t((1-m) y),   s, t vanish where m = 0

with s = tanh(.) of the s-network. log|det dy'/dx| = sum of both s. An RNVP block
stacks ``n_layer`` such layers (parameters stacked on a leading axis, run with
``lax.scan``). Functions here act on ONE flattened block of ``dim`` values; the model
vmaps them over the patch grid.

Direction names: ``encode`` is the RG direction (image -> latent, the paper's R),
``decode`` the generation direction G = R^-1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import conditioner


def checkerboard(block_size: int, channels: int) -> np.ndarray:
  """(k*k*C,) float mask, 1 where a + b is even, flattened in (a, b, c) order."""
  a = np.arange(block_size)
  m = ((a[:, None] + a[None, :]) % 2 == 0).astype(np.float64)
  return np.repeat(m[:, :, None], channels, axis=2).reshape(-1)


def init_block(rng, n_layer: int, dim: int, hidden: int, depth: int, n_res: int,
               dtype=jnp.float32) -> dict:
  """Parameters of an RNVP block: leaves have leading axes (n_layer, 2 = [s, t])."""
  return conditioner.init_network(rng, dim, hidden, depth, n_res, dtype,
                                  stack=(n_layer, 2))


def _shift_and_log_scale(layer_params, x_in, free):
  """s and t (as one batched call) on the conditioning input, zero off ``free``."""
  st = jax.vmap(conditioner.apply_network, in_axes=(0, None))(layer_params, x_in)
  log_scale = jnp.tanh(st[0]) * free
  shift = st[1] * free
  return log_scale, shift


def _layer_encode(layer_params, x, mask):
  log_det = 0.0
  for m in (mask, 1.0 - mask):
    s, t = _shift_and_log_scale(layer_params, x * m, 1.0 - m)
    x = x * jnp.exp(s) + t
    log_det = log_det + jnp.sum(s)
  return x, log_det


def _layer_decode(layer_params, y, mask):
  log_det = 0.0
  for m in (1.0 - mask, mask):
    s, t = _shift_and_log_scale(layer_params, y * m, 1.0 - m)
    y = (y - t) * jnp.exp(-s)
    log_det = log_det - jnp.sum(s)
  return y, log_det


def _scan_layers(layer_fn, params, x, mask, reverse, remat):
  if remat:
    layer_fn = jax.checkpoint(layer_fn)
  mask = jnp.asarray(mask, x.dtype)

  def body(carry, layer_params):
    x, log_det = carry
    x, ld = layer_fn(layer_params, x, mask)
    return (x, log_det + ld), None

  init = (x, jnp.zeros((), x.dtype))
  (x, log_det), _ = jax.lax.scan(body, init, params, reverse=reverse)
  return x, log_det


def block_encode(params, x, mask, remat: bool = False):
  """One block (dim,) through all RNVP layers, RG direction: (y, log|det dy/dx|)."""
  return _scan_layers(_layer_encode, params, x, mask, reverse=False, remat=remat)


def block_decode(params, y, mask, remat: bool = False):
  """Inverse of :func:`block_encode`: (x, log|det dx/dy|) = (x, -encode's)."""
  return _scan_layers(_layer_decode, params, y, mask, reverse=True, remat=remat)
