"""The RNVP block: the bijector that acts inside one k x k x C block.

One RNVP layer is two affine half-couplings under a checkerboard mask ``m`` (1 where
a + b is even, the same for every channel) that share ONE pair of networks s, t:

    y  = x * exp(s(m x)) + t(m x),           s, t vanish where m = 1
    y' = y * exp(s((1-m) y)) + t((1-m) y),   s, t vanish where m = 0

with s = tanh(.) of the s-network. log|det dy'/dx| = sum of both s. An RNVP block
stacks ``n_layer`` such layers (parameters stacked on a leading axis, applied in an
unrolled loop). Functions here act on ONE flattened block of ``dim`` values; the model
vmaps them over the patch grid.

Direction names: ``encode`` is the RG direction (image -> latent, the paper's R),
``decode`` the generation direction G = R^-1.
"""

from __future__ import annotations

import functools

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


def _shift_and_log_scale(layer_params, x_in, free, matmul_dtype=None):
  """s and t on the conditioning input, zero off ``free``.

  Two plain calls, not a vmap over the stacked pair: XLA:CPU runs the backward pass
  of the batched form several times slower.
  """
  s = conditioner.apply_network(jax.tree.map(lambda a: a[0], layer_params), x_in,
                                matmul_dtype)
  t = conditioner.apply_network(jax.tree.map(lambda a: a[1], layer_params), x_in,
                                matmul_dtype)
  return jnp.tanh(s) * free, t * free


def _layer_encode(layer_params, x, mask, matmul_dtype=None):
  log_det = 0.0
  for m in (mask, 1.0 - mask):
    s, t = _shift_and_log_scale(layer_params, x * m, 1.0 - m, matmul_dtype)
    x = x * jnp.exp(s) + t
    log_det = log_det + jnp.sum(s)
  return x, log_det


def _layer_decode(layer_params, y, mask, matmul_dtype=None):
  log_det = 0.0
  for m in (1.0 - mask, mask):
    s, t = _shift_and_log_scale(layer_params, y * m, 1.0 - m, matmul_dtype)
    y = (y - t) * jnp.exp(-s)
    log_det = log_det - jnp.sum(s)
  return y, log_det


def _run_layers(layer_fn, params, x, mask, reverse, remat, matmul_dtype=None):
  layer_fn = functools.partial(layer_fn, matmul_dtype=matmul_dtype)
  if remat:
    layer_fn = jax.checkpoint(layer_fn)
  mask = jnp.asarray(mask, x.dtype)
  n_layer = jax.tree.leaves(params)[0].shape[0]
  log_det = jnp.zeros((), x.dtype)
  # An unrolled loop: on XLA:CPU the backward pass of lax.scan here is about twice
  # as slow, and n_layer is small.
  for i in (reversed(range(n_layer)) if reverse else range(n_layer)):
    x, ld = layer_fn(jax.tree.map(lambda a, i=i: a[i], params), x, mask)
    log_det = log_det + ld
  return x, log_det


def block_encode(params, x, mask, remat: bool = False, matmul_dtype=None):
  """One block (dim,) through all RNVP layers, RG direction: (y, log|det dy/dx|)."""
  return _run_layers(_layer_encode, params, x, mask, reverse=False, remat=remat,
                     matmul_dtype=matmul_dtype)


def block_decode(params, y, mask, remat: bool = False, matmul_dtype=None):
  """Inverse of :func:`block_encode`: (x, log|det dx/dy|) = (x, -encode's)."""
  return _run_layers(_layer_decode, params, y, mask, reverse=True, remat=remat,
                     matmul_dtype=matmul_dtype)
