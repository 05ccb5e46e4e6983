"""Pixels to flow space and back, and bits per dimension.

u in {0..255} -> dequantised x = (u + U[0, 1)) / 256 -> p = 0.05 + 0.9 x -> y = logit(p).
Per element log|dy/dx| = log 0.9 - log p - log(1 - p). The model's density is over
x in [0, 1]^D; bits per dimension = (nats per dimension + log 256) / log 2.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

ALPHA = 0.05  # squeeze margin: p = ALPHA + (1 - 2 ALPHA) x


def dequantize(rng, images_uint8, dtype=jnp.float32):
  """uint8 (or integer-valued) pixels -> x in [0, 1) with uniform noise.

  The noise is drawn with JAX's partitionable threefry, whatever the process's
  setting: under a batch sharded over devices each draws its own rows' noise, with no
  communication, and the values do not depend on the sharding. (The non-partitionable
  scheme hashes half as often, but XLA splits it over the devices with collective
  permutes and all-gathers in every step.)
  """
  u = jnp.asarray(images_uint8).astype(dtype)
  with jax.threefry_partitionable(True):
    noise = jax.random.uniform(rng, u.shape, dtype)
  return (u + noise) / 256.0


def to_flow(x):
  """x in [0, 1] -> (y = logit(squeezed x), per-image log|dy/dx|)."""
  p = ALPHA + (1.0 - 2.0 * ALPHA) * x
  y = jnp.log(p) - jnp.log1p(-p)
  log_det = math.log(1.0 - 2.0 * ALPHA) - jnp.log(p) - jnp.log1p(-p)
  return y, jnp.sum(log_det.reshape(x.shape[0], -1), axis=1)


def from_flow(y):
  """Flow space -> x in [0, 1] (clipped): the inverse squeeze of :func:`to_flow`."""
  x = (jax.nn.sigmoid(y) - ALPHA) / (1.0 - 2.0 * ALPHA)
  return jnp.clip(x, 0.0, 1.0)


def to_uint8(x):
  """x in [0, 1] -> uint8 pixels (floor of 256 x, the inverse of dequantisation)."""
  return jnp.clip(jnp.floor(x * 256.0), 0, 255).astype(jnp.uint8)


def to_uint8_numpy(x) -> np.ndarray:
  """:func:`to_uint8` as a host array (for figures and files)."""
  return np.asarray(to_uint8(x))


def from_uint8(images) -> np.ndarray:
  """uint8 pixels -> x in [0, 1] at the centres of their bins ((u + 0.5) / 256,
  float32): the image a pixel stands for, without dequantisation noise."""
  return (np.asarray(images).astype(np.float32) + 0.5) / 256.0


def bits_per_dim(log_prob_x, num_dims: int):
  """Bits per dimension of 8-bit data from the log-density of x in [0, 1]^D."""
  nats = -log_prob_x / num_dims
  return (nats + math.log(256.0)) / math.log(2.0)
