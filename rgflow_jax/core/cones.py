"""Structural causal cones, from the index layout alone (paper section 3.4-3.5, fig. 3).

These are computed by explicit index arithmetic on the sites of each level, with no
use of the reshape/roll code in :mod:`rgflow_jax.core.geometry`, so the two can check each
other. A block of a layer mixes all of its sites, so a set of "touched" sites grows to
the union of the blocks it meets, layer by layer.

* ``inference_cone``: the latent sites that a region of pixels can affect (encode).
* ``generation_cone``: the pixels that one latent site can affect (decode).
"""

from __future__ import annotations

import numpy as np

from rgflow_jax.core.geometry import DECIMATOR, DISENTANGLER, Geometry


def block_ids(edge: int, block_size: int, layer: str, layer_order: str = "paper") -> np.ndarray:
  """(edge, edge) int: which block of ``layer`` each sub-lattice site belongs to. The
  half-block shift is the paper's disentangler's, or in the authors' order the
  decimator's (stated again here: this module does not use geometry's code)."""
  shifted = DISENTANGLER if layer_order == "paper" else DECIMATOR
  shift = block_size // 2 if layer == shifted else 0
  u = ((np.arange(edge) - shift) % edge) // block_size
  return u[:, None] * (edge // block_size) + u[None, :]


def _close_over_blocks(touched: np.ndarray, ids: np.ndarray) -> np.ndarray:
  return np.isin(ids, np.unique(ids[touched]))


def _as_geometry(geo) -> Geometry:
  if isinstance(geo, Geometry):
    return geo
  return geo.geometry  # an RGFlow model


def inference_cone(geo, region: np.ndarray) -> np.ndarray:
  """(L, L) bool over latent sites: those whose latents depend on pixels in ``region``.

  ``region`` is an (L, L) bool mask of pixels. Multiply the count of True sites by
  the channel count to get the number of latent variables in the cone.
  """
  geo = _as_geometry(geo)
  L, k = geo.image_size, geo.block_size
  region = np.asarray(region, dtype=bool)
  if region.shape != (L, L):
    raise ValueError(f"region must be an ({L}, {L}) bool mask, got {region.shape}")
  cone = np.zeros((L, L), dtype=bool)
  touched = region
  for h in range(geo.num_levels):
    edge = geo.edge(h)
    for layer in (DISENTANGLER, DECIMATOR):
      touched = _close_over_blocks(touched, block_ids(edge, k, layer, geo.layer_order))
    stride = 1 << h
    frozen = np.ones((edge, edge), dtype=bool)
    if h < geo.num_levels - 1:
      frozen[::2, ::2] = False
    cone[::stride, ::stride] |= touched & frozen
    touched = touched[::2, ::2]
  return cone


def generation_cone(geo, level: int, site: tuple[int, int]) -> np.ndarray:
  """(L, L) bool over pixels: those that the latent at image ``site`` can change.

  ``site`` = (i, j) in image coordinates; it must be a latent site of ``level``.
  """
  geo = _as_geometry(geo)
  k = geo.block_size
  i, j = site
  if not (0 <= level < geo.num_levels):
    raise ValueError(f"level must be in 0..{geo.num_levels - 1}, got {level}")
  if geo.level_of_site()[i, j] != level:
    raise ValueError(f"site {site} holds a latent of level "
                     f"{geo.level_of_site()[i, j]}, not {level}")
  stride = 1 << level
  touched = np.zeros((geo.edge(level),) * 2, dtype=bool)
  touched[i // stride, j // stride] = True
  for h in range(level, -1, -1):
    if h < level:  # embed the coarse sites into this level's sub-lattice
      finer = np.zeros((geo.edge(h),) * 2, dtype=bool)
      finer[::2, ::2] = touched
      touched = finer
    for layer in (DECIMATOR, DISENTANGLER):
      touched = _close_over_blocks(touched,
                                   block_ids(geo.edge(h), k, layer, geo.layer_order))
  return touched


def dependency_matrix(geo) -> np.ndarray:
  """(L*L, L*L) bool: entry [latent site, pixel] is True if it may be nonzero."""
  geo = _as_geometry(geo)
  L = geo.image_size
  dep = np.zeros((L * L, L * L), dtype=bool)
  for p in range(L * L):
    region = np.zeros(L * L, dtype=bool)
    region[p] = True
    dep[:, p] = inference_cone(geo, region.reshape(L, L)).reshape(-1)
  return dep
