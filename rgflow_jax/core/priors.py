"""Factorised priors over the latents: Laplace (sparse, the default) and Gaussian.

Both have unit variance at temperature T = 1; T scales the spread:
Laplace p(z) = exp(-|z|/b) / (2b) with b = T / sqrt(2); Gaussian N(0, T^2).
``temperature`` broadcasts against ``z`` (a number, or a per-site map built from a
temperature per level by the model).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

PRIORS = ("laplace", "gaussian")


def check_prior(name: str) -> str:
  if name not in PRIORS:
    raise ValueError(f"prior must be one of {PRIORS}, got {name!r}")
  return name


def log_density(name: str, z, temperature=1.0):
  """Elementwise log p(z) (same shape as z)."""
  check_prior(name)
  t = jnp.asarray(temperature, z.dtype)
  if name == "laplace":
    b = t / math.sqrt(2.0)
    return -jnp.abs(z) / b - jnp.log(2.0 * b)
  return -0.5 * jnp.square(z / t) - jnp.log(t) - 0.5 * math.log(2.0 * math.pi)


def sample(name: str, rng, shape, temperature=1.0, dtype=jnp.float32):
  """Draws of the prior with the given shape; temperature 0 gives the mode, 0."""
  check_prior(name)
  t = jnp.asarray(temperature, dtype)
  if name == "laplace":
    return jax.random.laplace(rng, shape, dtype) * (t / math.sqrt(2.0))
  return jax.random.normal(rng, shape, dtype) * t
