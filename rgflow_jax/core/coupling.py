"""The RNVP block: the bijector that acts inside one k x k x C block (its definition).

One RNVP layer is two affine half-couplings under a checkerboard mask ``m`` (1 where
a + b is even, the same for every channel) that share ONE pair of networks s, t:

    y  = x * exp(s(m x)) + t(m x),           s, t vanish where m = 1
    y' = y * exp(s((1-m) y)) + t((1-m) y),   s, t vanish where m = 0

with s = tanh(.) of the s-network (:mod:`rgflow_jax.core.conditioner`). log|det dy'/dx| is
the sum of both s. An RNVP block stacks ``n_layer`` such layers (parameters stacked on
a leading axis), encode running them first to last and decode undoing them last to
first.

This module is the definition, one block at a time, written literally with masks. The
model runs the same arithmetic over every block of a layer at once, arranged for
speed, in :mod:`rgflow_jax.core.coupling_fast` (tested against this one).

Direction names: ``encode`` is the RG direction (image -> latent, the paper's R),
``decode`` the generation direction G = R^-1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import conditioner


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


def _s_and_t(layer_params, x, m):
  """s and t of one half-coupling: computed from ``x * m``, zero where m = 1."""
  s_net = jax.tree.map(lambda a: a[0], layer_params)
  t_net = jax.tree.map(lambda a: a[1], layer_params)
  s = jnp.tanh(conditioner.apply_network(s_net, x * m))
  t = conditioner.apply_network(t_net, x * m)
  return s * (1.0 - m), t * (1.0 - m)


def reference_layer_encode(layer_params, x, mask):
  """One RNVP layer on ONE flattened block (dim,): (y', log|det dy'/dx|)."""
  log_det = 0.0
  for m in (mask, 1.0 - mask):
    s, t = _s_and_t(layer_params, x, m)
    x = x * jnp.exp(s) + t
    log_det = log_det + jnp.sum(s)
  return x, log_det


def reference_layer_decode(layer_params, y, mask):
  """The inverse of :func:`reference_layer_encode`: (x, log|det dx/dy'|)."""
  log_det = 0.0
  for m in (1.0 - mask, mask):
    s, t = _s_and_t(layer_params, y, m)  # y * m is unchanged by that half-coupling
    y = (y - t) * jnp.exp(-s)
    log_det = log_det - jnp.sum(s)
  return y, log_det


def _layers(params):
  n_layer = params["scale"].shape[0]
  return [jax.tree.map(lambda a, i=i: a[i], params) for i in range(n_layer)]


def encode_block(params, block):
  """One block (k, k, C) through an RNVP block: (out (k, k, C), log|det|)."""
  k, _, c = block.shape
  mask = jnp.asarray(checkerboard(k, c), block.dtype)
  x, log_det = block.reshape(-1), 0.0
  for layer in _layers(params):
    x, ld = reference_layer_encode(layer, x, mask)
    log_det = log_det + ld
  return x.reshape(block.shape), log_det


def decode_block(params, block):
  """The inverse of :func:`encode_block`: (x (k, k, C), log|det dx/dz|)."""
  k, _, c = block.shape
  mask = jnp.asarray(checkerboard(k, c), block.dtype)
  y, log_det = block.reshape(-1), 0.0
  for layer in reversed(_layers(params)):
    y, ld = reference_layer_decode(layer, y, mask)
    log_det = log_det + ld
  return y.reshape(block.shape), log_det
