"""Geometry of the RG patch grid: levels, layers, blocks and latent sites.

An image of edge ``L`` is processed at levels ``h = 0 .. H-1`` with
``H = log2(L / k) + 1``. Level ``h`` acts on the sub-lattice ``x[::2**h, ::2**h]``
(edge ``L / 2**h``), cut into ``k x k`` blocks. Each level has two layers of blocks,
one aligned to the origin and one shifted by half a block with periodic wrap-around.
In the RG direction (encode) the *disentangler* acts first and the *decimator* second;
after the decimator, the sites that do not carry on to the next level are frozen as
latents. Which of the two layers is shifted is the ``layer_order``:

* ``"paper"`` (eqs. 6-9): the disentangler is shifted, the decimator aligned;
* ``"authors"`` (the authors' released code, with which the paper's figures were made):
  the disentangler is aligned, the decimator shifted.

With one level the two differ by a translation only; with two or more they are
different functions.

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
LAYER_ORDERS = ("paper", "authors")


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Static layout of an ``image_size x image_size x channels`` RG network."""

  image_size: int
  channels: int
  block_size: int
  layer_order: str = "paper"

  def __post_init__(self):
    L, C, k = self.image_size, self.channels, self.block_size
    if self.layer_order not in LAYER_ORDERS:
      raise ValueError(f"layer_order must be one of {LAYER_ORDERS}, got {self.layer_order!r}")
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

  def shift(self, layer: str) -> int:
    """Sites by which ``layer``'s blocks are shifted from the origin (0 or k/2)."""
    return layer_shift(layer, self.block_size, self.layer_order)

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


def layer_shift(layer: str, block_size: int, layer_order: str = "paper") -> int:
  """Shift of ``layer``'s blocks: half a block for the paper's disentangler and the
  authors' decimator, none for the other layer of each order."""
  if layer not in LAYERS:
    raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
  if layer_order not in LAYER_ORDERS:
    raise ValueError(f"layer_order must be one of {LAYER_ORDERS}, got {layer_order!r}")
  shifted = DISENTANGLER if layer_order == "paper" else DECIMATOR
  return block_size // 2 if layer == shifted else 0


def to_blocks(x: jnp.ndarray, block_size: int, shift: int) -> jnp.ndarray:
  """(B, M, M, C) sub-lattice -> (B, blocks, k, k, C) blocks shifted by ``shift`` sites.

  Block (p, q) covers sites ``k*p + shift + a`` (mod M); blocks are ordered row-major
  over (p, q). ``shift`` is :func:`layer_shift` of the layer.
  """
  k = block_size
  if shift:
    x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
  b, m, _, c = x.shape
  n = m // k
  x = x.reshape(b, n, k, n, k, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, n * n, k, k, c)


def from_blocks(blocks: jnp.ndarray, shift: int) -> jnp.ndarray:
  """Inverse of :func:`to_blocks`: (B, blocks, k, k, C) -> (B, M, M, C)."""
  b, nb, k, _, c = blocks.shape
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
