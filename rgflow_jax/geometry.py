"""Geometry of the RG patch grid: levels, layers, blocks and latent sites.

An image of edge ``L`` is processed at levels ``h = 0 .. H-1`` with
``H = log2(L / k) + 1``. Level ``h`` acts on the sub-lattice ``x[::2**h, ::2**h]``
(edge ``L / 2**h``), cut into ``k x k`` blocks. Each level has two layers of blocks:
the *disentangler*, shifted by half a block with periodic wrap-around, and the
*decimator*, aligned to the origin. In the RG direction (encode) the disentangler acts
first (paper eqs. 6-9).

Everything here is static: plain Python/NumPy computed once from the shape, plus
reshape/transpose/roll helpers that move a layer's blocks in and out of an NHWC array
(no gather/scatter tables).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

DISENTANGLER = "dis"
DECIMATOR = "dec"
LAYERS = (DISENTANGLER, DECIMATOR)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Static layout of an ``image_size x image_size x channels`` RG network."""

  image_size: int
  channels: int
  block_size: int

  def __post_init__(self):
    L, C, k = self.image_size, self.channels, self.block_size
    if k < 2 or k % 2:
      raise ValueError(f"block_size must be an even integer >= 2, got {k}")
    if C < 1:
      raise ValueError(f"channels must be >= 1, got {C}")
    if L < k or L % k or (L // k) & (L // k - 1):
      raise ValueError(
          f"image_size must be block_size * 2**n (block_size={k}), got {L}; "
          f"e.g. {k * 8} or {k * 4}")

  @property
  def num_levels(self) -> int:
    return int(math.log2(self.image_size // self.block_size)) + 1

  @property
  def event_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, self.channels)

  @property
  def patch_dim(self) -> int:
    """Number of variables in one k x k x C block."""
    return self.block_size * self.block_size * self.channels

  def edge(self, level: int) -> int:
    """Edge length of the sub-lattice that ``level`` acts on."""
    return self.image_size >> level

  def blocks_per_side(self, level: int) -> int:
    return self.edge(level) // self.block_size

  def level_of_site(self) -> np.ndarray:
    """(L, L) int array: the level at which site (i, j) is frozen as a latent."""
    return level_of_site(self.image_size, self.num_levels)

  def latents_per_level(self) -> tuple[int, ...]:
    lvl = self.level_of_site()
    return tuple(int((lvl == h).sum()) * self.channels
                 for h in range(self.num_levels))


def level_of_site(image_size: int, num_levels: int) -> np.ndarray:
  """Largest h < num_levels with both i and j divisible by 2**h."""
  top = num_levels - 1
  # Power of two dividing each index (0 is divisible by every power).
  tz = np.array([top if i == 0 else min((i & -i).bit_length() - 1, top)
                 for i in range(image_size)])
  return np.minimum(tz[:, None], tz[None, :])


def _checked_shift(layer: str, k: int) -> int:
  if layer == DISENTANGLER:
    return k // 2
  if layer == DECIMATOR:
    return 0
  raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")


def to_blocks(x: jnp.ndarray, block_size: int, layer: str) -> jnp.ndarray:
  """(B, M, M, C) sub-lattice -> (B, blocks, k, k, C) blocks of one layer.

  Block (p, q) of the disentangler covers sites ``k*p + k/2 + a`` (mod M), of the
  decimator ``k*p + a``; blocks are ordered row-major over (p, q).
  """
  k = block_size
  shift = _checked_shift(layer, k)
  if shift:
    x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
  b, m, _, c = x.shape
  n = m // k
  x = x.reshape(b, n, k, n, k, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, n * n, k, k, c)


def from_blocks(blocks: jnp.ndarray, layer: str) -> jnp.ndarray:
  """Inverse of :func:`to_blocks`: (B, blocks, k, k, C) -> (B, M, M, C)."""
  b, nb, k, _, c = blocks.shape
  shift = _checked_shift(layer, k)
  n = math.isqrt(nb)
  x = blocks.reshape(b, n, n, k, k, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(b, n * k, n * k, c)
  if shift:
    x = jnp.roll(x, (shift, shift), axis=(1, 2))
  return x


def coarse_sites(x: jnp.ndarray) -> jnp.ndarray:
  """(B, M, M, C) -> (B, M/2, M/2, C): the sites that carry on to the next level."""
  return x[:, ::2, ::2, :]


def with_coarse_sites(x: jnp.ndarray, coarse: jnp.ndarray) -> jnp.ndarray:
  """Replace the ``::2`` sites of ``x`` (B, M, M, C) by ``coarse`` (B, M/2, M/2, C)."""
  b, m, _, c = x.shape
  n = m // 2
  x6 = x.reshape(b, n, 2, n, 2, c)
  keep = np.zeros((1, 1, 2, 1, 2, 1), dtype=bool)
  keep[0, 0, 0, 0, 0, 0] = True
  x6 = jnp.where(keep, coarse[:, :, None, :, None, :], x6)
  return x6.reshape(b, m, m, c)
