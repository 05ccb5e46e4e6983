"""Receptive fields of latents (paper eq. 14), exact through forward-mode derivatives.

RF_l = E_{z ~ p(z)} sum_c |d x(z) / d z_l|, with x = G(z) the generated image in
[0, 1] pixel units (before clipping). Each derivative is one ``jax.jvp`` with a
one-hot tangent, batched over prior samples and vmapped over a chunk of latents.
Every function returns JAX arrays; :func:`receptive_field` is itself a JAX function of
the latent's index (jit, vmap).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import bound, pixels
from rgflow_jax.core.flow import Flow
from rgflow_jax.io import figures, storage
from rgflow_jax.io.progress import bar as progress_bar


def _image(flow, params, z):
  y, _ = flow.decode(params, z)
  return (jax.nn.sigmoid(y) - pixels.ALPHA) / (1.0 - 2.0 * pixels.ALPHA)


def latent_sites(flow, level: int) -> np.ndarray:
  """(n, 2) image coordinates (i, j) of the latent sites of ``level``, row-major."""
  if not 0 <= level < flow.num_levels:
    raise ValueError(f"level must be in 0..{flow.num_levels - 1}, got {level}")
  return np.argwhere(flow.level_of_site() == level)


def _field(flow, params, z, latent):
  """(L, L) receptive field of one latent ``latent`` = (i, j, c) (int (3,)), averaged
  over the prior draws ``z`` (S, L, L, C): one forward-mode derivative."""
  tangent = jnp.zeros(z.shape[1:], z.dtype).at[latent[0], latent[1], latent[2]].set(1.0)
  _, dx = jax.jvp(lambda v: _image(flow, params, v), (z,),
                  (jnp.broadcast_to(tangent, z.shape),))
  return jnp.mean(jnp.sum(jnp.abs(dx), axis=-1), axis=0)


_fields = jax.jit(jax.vmap(_field, in_axes=(None, None, None, 0)), static_argnums=0)


def _draws(flow, params, rng, n_samples: int, temperature):
  dtype = jax.tree.leaves(params)[0].dtype
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return flow.sample_latents(rng, n_samples, temperature, dtype)


def receptive_fields(flow, params, latents, rng, n_samples: int = 16,
                     temperature=1.0, chunk: int = 32) -> jax.Array:
  """(n, L, L) receptive fields of the latents ``latents`` = [(i, j, c), ...], all
  from the same ``n_samples`` prior draws."""
  params = bound.tree_of(params)
  latents = np.asarray(latents, dtype=np.int32).reshape(-1, 3)
  L, C = flow.image_size, flow.channels
  if ((latents[:, :2] < 0) | (latents[:, :2] >= L)).any() or \
     ((latents[:, 2] < 0) | (latents[:, 2] >= C)).any():
    raise ValueError(f"latents must be (i, j, c) with 0 <= i, j < {L}, 0 <= c < {C}")
  z = _draws(flow, params, rng, n_samples, temperature)
  out = []
  # Pad every short chunk to a power of two (at most ``chunk``): few compiled shapes
  # whatever the number of latents, and at most twice the work for a short list.
  chunk = min(chunk, 1 << max(len(latents) - 1, 0).bit_length())
  for start in range(0, len(latents), chunk):
    part = latents[start:start + chunk]
    pad = chunk - len(part)
    padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
    out.append(_fields(flow, params, z, jnp.asarray(padded))[:len(part)])
  return jnp.concatenate(out)


def receptive_field_at_site(params, *args, **kwargs) -> jax.Array:
  """(L, L) receptive field of the latent at image ``site`` = (i, j) of ``level``::

      rf = receptive_field_at_site(params, level, site, rng=None, n_samples=16,
                                   temperature=1.0, channel=None)

  With ``channel`` None, the fields of the site's C latents are averaged. ``params``
  as in :func:`receptive_field` (or ``(flow, params, ...)``).
  """
  flow, params, args = _split(params, args, "receptive_field_at_site")
  return _at_site(flow, params, *args, **kwargs)


def _at_site(flow, params, level: int, site, rng=None, n_samples: int = 16,
             temperature=1.0, channel: int | None = None):
  i, j = site
  if flow.level_of_site()[i, j] != level:
    raise ValueError(f"site {tuple(site)} holds a latent of level "
                     f"{flow.level_of_site()[i, j]}, not {level}")
  channels = range(flow.channels) if channel is None else [channel]
  rfs = receptive_fields(flow, params, [(i, j, c) for c in channels], rng, n_samples,
                         temperature)
  return rfs.mean(axis=0)


def _split(params, args, caller: str):
  """(flow, plain params, the other arguments) of a call in either form: (params that
  carry their flow, ...) or (flow, params, ...)."""
  if isinstance(params, Flow):
    if not args:
      raise TypeError(f"{caller}(flow, params, ...) needs the params after the flow")
    return params, bound.tree_of(args[0]), args[1:]
  flow, tree = bound.unbind(params, caller)
  return flow, tree, args


def latents_of_level(flow, level: int) -> np.ndarray:
  """(n, 3) latents (i, j, c) of ``level``: its sites row-major, channels within a site.
  A latent's index within its level is its row here."""
  return np.array([(i, j, c) for i, j in latent_sites(flow, level)
                   for c in range(flow.channels)])


def receptive_field(params, *args, **kwargs) -> jax.Array:
  """(L, L) receptive field (paper eq. 14) of latent number ``idx`` of ``level``::

      rf = receptive_field(params, level, idx, rng=None, n_samples=16, temperature=1.0)

  ``params`` carries its flow (:func:`rgflow_jax.load`, :func:`rgflow_jax.bind`);
  ``receptive_field(flow, params, level, idx, ...)`` is the same with a plain pytree.
  ``idx`` is the latent's row in :func:`latents_of_level` (site row-major, channel
  within a site). The field is the mean over ``n_samples`` prior draws from ``rng``
  (default ``PRNGKey(0)``) of sum_c |dx / dz|, x the image in [0, 1] pixel units.

  A JAX function of ``params`` and ``idx``: ``level`` and ``n_samples`` fix shapes
  (static under ``jax.jit``), ``idx`` may be traced, e.g.
  ``jax.vmap(lambda i: receptive_field(params, level, i))(jnp.arange(n))``; a traced
  ``idx`` is not range-checked (out of range reads the nearest latent).
  """
  flow, params, args = _split(params, args, "receptive_field")
  return _receptive_field(flow, params, *args, **kwargs)


def _receptive_field(flow, params, level: int, idx, rng=None, n_samples: int = 16,
                     temperature=1.0):
  if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
    raise TypeError(f"level must be an int (a Python number: it fixes shapes), "
                    f"got {level!r}")
  latents = latents_of_level(flow, level)
  if not isinstance(idx, jax.core.Tracer):
    if np.ndim(idx) != 0 or not np.issubdtype(np.asarray(idx).dtype, np.integer):
      raise TypeError(f"idx must be one int, a latent's number within level {level} "
                      f"(0..{len(latents) - 1}), got {idx!r}; for the latent at an image "
                      "site (i, j) use receptive_field_at_site")
    if not 0 <= int(idx) < len(latents):
      raise ValueError(f"level {level} has {len(latents)} latents: idx must be in "
                       f"0..{len(latents) - 1}, got {int(idx)}")
  z = _draws(flow, params, rng, n_samples, temperature)
  return _fields(flow, params, z, jnp.asarray(latents, jnp.int32)[jnp.asarray(idx)][None])[0]


def receptive_field_strengths(flow, params, level: int, rng, n_samples: int = 8,
                              chunk: int = 64, return_maps: bool = False):
  """(sites (n, 3) as (i, j, c), strengths (n,)): each latent's summed receptive field.

  With ``return_maps``, also the (n, L, L) fields themselves.
  """
  latents = latents_of_level(flow, level)
  rfs = receptive_fields(flow, params, latents, rng, n_samples, chunk=chunk)
  strengths = rfs.reshape(len(latents), -1).sum(axis=1)
  return (latents, strengths, rfs) if return_maps else (latents, strengths)


def strongest_latents(flow, params, rng, n_samples):
  """The latent (i, j, c) with the largest receptive field at each level."""
  top = []
  for level in range(flow.num_levels):
    latents, s = receptive_field_strengths(flow, params, level, rng, n_samples)
    top.append(tuple(int(v) for v in latents[np.argmax(s)]))
  return top


def receptive_field_figures(flow, params, key, rf_samples, out_dir, progress=False):
  """Maps of the 6 strongest latents per level and the strength histograms (Fig. 5c,
  C1), the prior sampled with ``key``; returns (summary per level, the strongest latent
  of each level)."""
  strongest, strengths, maps, titles, summary = [], {}, [], [], {}
  for level in progress_bar(range(flow.num_levels), progress, desc="receptive fields",
                            unit="level"):
    # One pass over every latent of the level: strengths, and the maps of the top 6.
    latents, s, rfs = receptive_field_strengths(
        flow, params, level, key, n_samples=rf_samples,
        return_maps=True)
    strengths[f"level {level}"] = s
    order = np.argsort(-s)[:6]
    top, rfs = latents[order], rfs[order]
    strongest.append(tuple(int(v) for v in top[0]))
    maps.extend(rfs)
    titles.extend(f"h={level} ({i},{j},{c})" for i, j, c in top)
    summary[f"level{level}"] = {
        "median_strength": float(np.median(s)), "max_strength": float(s.max()),
        "count_strength_above_1": int((s > 1).sum()), "top": top.tolist(),
        # how spread out the strongest map is: pixels holding half its mass
        "top_map_pixels_for_half_mass": _pixels_for_half(rfs[0])}
  out_dir = storage.as_path(out_dir)
  figures.plot_maps(np.stack(maps), titles, out_dir / "receptive_fields.png", ncol=6,
                  suptitle="receptive fields of the 6 strongest latents of each "
                  "level, a row per level (h = level, (i, j, c) = the latent): E_z sum_c "
                  "|dx/dz| with x in [0, 1] pixel units; each map coloured from 0 to its "
                  "own maximum (its colour bar)")
  figures.plot_histograms(strengths, out_dir / "rf_strengths.png",
                        "receptive-field strength (sum of the map)",
                        "receptive-field strengths per level")
  return summary, strongest


def _pixels_for_half(rf_map) -> int:
  v = np.sort(np.asarray(rf_map).reshape(-1))[::-1]
  return int(np.searchsorted(np.cumsum(v), 0.5 * v.sum()) + 1)
