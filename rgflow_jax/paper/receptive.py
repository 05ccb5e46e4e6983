"""Receptive fields of latents (paper eq. 14), exact through forward-mode derivatives.

RF_l = E_{z ~ p(z)} sum_c |d x(z) / d z_l|, with x = G(z) the generated image in
[0, 1] pixel units (before clipping). Each derivative is one ``jax.jvp`` with a
one-hot tangent, batched over prior samples and vmapped over a chunk of latents.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import pixels


def _image(flow, params, z):
  y, _ = flow.decode(params, z)
  return (jax.nn.sigmoid(y) - pixels.ALPHA) / (1.0 - 2.0 * pixels.ALPHA)


def latent_sites(flow, level: int) -> np.ndarray:
  """(n, 2) image coordinates (i, j) of the latent sites of ``level``, row-major."""
  if not 0 <= level < flow.num_levels:
    raise ValueError(f"level must be in 0..{flow.num_levels - 1}, got {level}")
  return np.argwhere(flow.level_of_site() == level)


@functools.partial(jax.jit, static_argnums=0)
def _rf_batch(flow, params, z, latents):
  """(len(latents), L, L) receptive fields; ``latents`` is (n, 3) int (i, j, c)."""
  shape = z.shape[1:]

  def one(latent):
    tangent = jnp.zeros(shape, z.dtype).at[latent[0], latent[1], latent[2]].set(1.0)
    tangents = jnp.broadcast_to(tangent, z.shape)
    _, dx = jax.jvp(lambda v: _image(flow, params, v), (z,), (tangents,))
    return jnp.mean(jnp.sum(jnp.abs(dx), axis=-1), axis=0)

  return jax.vmap(one)(latents)


def receptive_fields(flow, params, latents, rng, n_samples: int = 16,
                     temperature=1.0, chunk: int = 32) -> np.ndarray:
  """(n, L, L) receptive fields of the latents ``latents`` = [(i, j, c), ...]."""
  latents = np.asarray(latents, dtype=np.int32).reshape(-1, 3)
  L, C = flow.image_size, flow.channels
  if ((latents[:, :2] < 0) | (latents[:, :2] >= L)).any() or \
     ((latents[:, 2] < 0) | (latents[:, 2] >= C)).any():
    raise ValueError(f"latents must be (i, j, c) with 0 <= i, j < {L}, 0 <= c < {C}")
  dtype = jax.tree.leaves(params)[0].dtype
  z = flow.sample_latents(rng, n_samples, temperature, dtype)
  out = []
  # Pad every short chunk to a power of two (at most ``chunk``): few compiled shapes
  # whatever the number of latents, and at most twice the work for a short list.
  chunk = min(chunk, 1 << max(len(latents) - 1, 0).bit_length())
  for start in range(0, len(latents), chunk):
    part = latents[start:start + chunk]
    pad = chunk - len(part)
    padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
    out.append(np.asarray(_rf_batch(flow, params, z, jnp.asarray(padded)))[:len(part)])
  return np.concatenate(out)


def receptive_field_at_site(flow, params, level: int, site, rng, n_samples: int = 16,
                    temperature=1.0, channel: int | None = None) -> np.ndarray:
  """(L, L) receptive field of the latent at image ``site`` = (i, j) of ``level``.

  With ``channel`` None, the fields of the site's C latents are averaged.
  """
  i, j = site
  if flow.level_of_site()[i, j] != level:
    raise ValueError(f"site {tuple(site)} holds a latent of level "
                     f"{flow.level_of_site()[i, j]}, not {level}")
  channels = range(flow.channels) if channel is None else [channel]
  rfs = receptive_fields(flow, params, [(i, j, c) for c in channels], rng, n_samples,
                         temperature)
  return rfs.mean(axis=0)


def latents_of_level(flow, level: int) -> np.ndarray:
  """(n, 3) latents (i, j, c) of ``level``: its sites row-major, channels within a site.
  A latent's index within its level is its row here."""
  return np.array([(i, j, c) for i, j in latent_sites(flow, level)
                   for c in range(flow.channels)])


def receptive_field(flow, params, level: int, idx: int, rng=None,
                             n_samples: int = 16, temperature=1.0) -> np.ndarray:
  """(L, L) receptive field of latent number ``idx`` of ``level`` (its row in
  :func:`latents_of_level`); ``rng`` defaults to ``PRNGKey(0)``."""
  latents = latents_of_level(flow, level)
  if not 0 <= idx < len(latents):
    raise ValueError(f"level {level} has {len(latents)} latents: idx must be in "
                     f"0..{len(latents) - 1}, got {idx}")
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return receptive_fields(flow, params, latents[idx:idx + 1], rng, n_samples, temperature)[0]


def receptive_field_strengths(flow, params, level: int, rng, n_samples: int = 8,
                              chunk: int = 64, return_maps: bool = False):
  """(sites (n, 3) as (i, j, c), strengths (n,)): each latent's summed receptive field.

  With ``return_maps``, also the (n, L, L) fields themselves.
  """
  latents = latents_of_level(flow, level)
  rfs = receptive_fields(flow, params, latents, rng, n_samples, chunk=chunk)
  strengths = rfs.reshape(len(latents), -1).sum(axis=1)
  return (latents, strengths, rfs) if return_maps else (latents, strengths)
