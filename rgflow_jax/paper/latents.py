"""Reading the latents scale by scale: mixing levels (eq. 15), progressive generation
and traversals of one latent (paper sections 3.5, 4.3-4.5, App. D).

All functions are pure in ``params``; the level of each latent site comes from the
model (``flow.level_of_site()``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import pixels


def level_mask(flow, levels) -> np.ndarray:
  """(L, L, 1) bool: the latent sites whose level is in ``levels``."""
  return np.isin(flow.level_of_site(), list(levels))[..., None]


def mix_levels(flow, z_a, z_b, theta: int):
  """Paper eq. 15: z_A at the sites of level >= theta, z_B at the levels below.

  So theta = 0 returns z_a (every level is >= 0) and theta above the top level returns
  z_b; raising theta hands more of the fine levels to z_b (Fig. 7a).
  """
  high = flow.level_of_site()[..., None] >= theta
  return jnp.where(high, z_a, z_b)


def progressive(flow, params, z):
  """Coarse-to-fine generation (Fig. 5a): for h = H-1 .. 0, the images decoded with
  only the latents of levels >= h; the finer latents are set to 0, the prior's mode
  (the most likely value of a Laplace or Gaussian latent).

  Returns images in [0, 1] of shape (H, B, L, L, C), coarsest first.
  """
  out = []
  for h in reversed(range(flow.num_levels)):
    zh = jnp.where(level_mask(flow, range(h, flow.num_levels)), z, 0.0)
    out.append(pixels.from_flow(flow.decode(params, zh)[0]))
  return jnp.stack(out)


def traverse(flow, params, z, latent, values):
  """Vary one latent (i, j, c) over ``values`` for every image of z (Fig. 6).

  Returns images in [0, 1] of shape (len(values), B, L, L, C).
  """
  i, j, c = latent
  values = jnp.asarray(values, z.dtype)

  def one(v):
    return pixels.from_flow(flow.decode(params, z.at[:, i, j, c].set(v))[0])

  return jax.lax.map(one, values)


# Jitted once per model (the flow is static and hashable): ``jax.jit(flow.encode)``
# would make a new bound method, and a new compilation, on every call.
@functools.partial(jax.jit, static_argnums=0)
def encode_jit(flow, params, y):
  return flow.encode(params, y)


@functools.partial(jax.jit, static_argnums=0)
def decode_jit(flow, params, z):
  return flow.decode(params, z)
