"""Cones along one axis: which blocks of each stage an interval of sites reaches.

The blocks of a layer are products of intervals, so the cone of a rectangle is the
product of two one-dimensional cones; these functions compute one of them by running
an interval of sites through the flow's stage schedule (``RGFlow.stages``), closing it
under each stage's blocks. Static NumPy, computed outside jit.
"""

from __future__ import annotations

import functools

import numpy as np


def interval(start: int, length: int, edge: int) -> np.ndarray:
  """(edge,) bool: the sites [start, start + length) with periodic wrap."""
  mask = np.zeros(edge, bool)
  mask[(start + np.arange(length)) % edge] = True
  return mask


def blocks_touching(mask: np.ndarray, k: int, shift: int) -> np.ndarray:
  """The block indices (along one axis) of a layer whose k sites meet ``mask``."""
  edge = mask.size
  ids = ((np.arange(edge) - shift) % edge) // k
  return np.unique(ids[mask])


def sites_of(blocks: np.ndarray, k: int, shift: int, edge: int) -> np.ndarray:
  """(n_blocks, k) site indices of those blocks (block p holds k*p + shift + a)."""
  return (k * blocks[:, None] + shift + np.arange(k)[None, :]) % edge


def _close(touched: np.ndarray, k: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
  """The blocks that ``touched`` meets, and every site those blocks hold."""
  blocks = blocks_touching(touched, k, shift)
  out = np.zeros(touched.size, bool)
  out[sites_of(blocks, k, shift, touched.size).reshape(-1)] = True
  return blocks, out


def inference_axis(flow, start: int, length: int) -> list[dict]:
  """Per level, ``{layer: block indices}`` of the inference cone of the pixels
  [start, start + length): the stages in encode order; after a level's decimator its
  ::2 sites go on to the next level."""
  out = [{} for _ in range(flow.num_levels)]
  touched = interval(start, length, flow.image_size)
  for stage in flow.stages():
    out[stage.level][stage.layer], touched = _close(touched, flow.block_size, stage.shift)
    if stage.ends_level:
      touched = touched[::2]
  return out


def generation_axis(flow, start: int, length: int) -> list[dict]:
  """Per level, ``{layer: block indices}`` that a change of the latents at the image
  sites [start, start + length) reaches: the stages in decode order; before a level's
  decimator the level above's outputs become its ::2 sites, beside its own latents."""
  out = [{} for _ in range(flow.num_levels)]
  box = interval(start, length, flow.image_size)
  touched = None
  for stage in flow.stages(inverse=True):
    if stage.ends_level:
      own = box[:: 1 << stage.level]
      if touched is not None:
        finer = np.zeros(own.size, bool)
        finer[::2] = touched
        own = own | finer
      touched = own
    out[stage.level][stage.layer], touched = _close(touched, flow.block_size, stage.shift)
  return out


@functools.lru_cache(maxsize=64)
def most_blocks(flow, length: int, generation: bool) -> tuple[dict, ...]:
  """Per level and layer, the most blocks along one axis over every offset (periodic
  wrap included) of the cones of intervals of ``length`` sites."""
  axis = generation_axis if generation else inference_axis
  most = [{} for _ in range(flow.num_levels)]
  for start in range(flow.image_size):
    for h, level in enumerate(axis(flow, start, length)):
      for layer, blocks in level.items():
        most[h][layer] = max(most[h].get(layer, 0), len(blocks))
  return tuple(most)


@functools.lru_cache(maxsize=64)
def most_site_blocks(flow, level: int) -> tuple[dict, ...]:
  """Per level and layer, the most blocks of the generation cone of one latent site
  over every site of ``level`` (both axes at once: a site (i, j) holds a latent of level
  min(level of i, level of j), so rows and columns are not independent here).

  A site of a fine level reaches no coarser stage and few blocks of the others, so its
  plan is far smaller than that of a one-site box anywhere (which must cover the top
  level's sites, whose cone is the whole image)."""
  L = flow.image_size
  on_level = flow.level_of_site() == level
  # blocks[i][h][layer]: the blocks along one axis of the cone of the site interval [i, i+1)
  blocks = [generation_axis(flow, i, 1) for i in range(L)]
  most = [{} for _ in range(flow.num_levels)]
  for h in range(flow.num_levels):
    for layer in blocks[0][h]:
      n = np.array([len(b[h][layer]) for b in blocks])
      most[h][layer] = int((np.outer(n, n) * on_level).max())
  return tuple(most)
