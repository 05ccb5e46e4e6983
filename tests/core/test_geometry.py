import numpy as np
import pytest

from rgflow_jax import Geometry
from rgflow_jax.core import geometry
from rgflow_jax.core.cones import block_ids


def test_latent_counts_paper_size():
  geo = Geometry(32, 3, 4)
  assert geo.num_levels == 4
  assert geo.latents_per_level() == (2304, 576, 144, 48)
  assert sum(geo.latents_per_level()) == 32 * 32 * 3


@pytest.mark.parametrize("L,k", [(32, 4), (16, 2), (64, 4), (24, 6)])
def test_level_of_site_matches_sublattice_rule(L, k):
  geo = Geometry(L, 1, k)
  H = geo.num_levels
  expected = np.zeros((L, L), int)
  for i in range(L):
    for j in range(L):
      expected[i, j] = max(h for h in range(H) if i % 2**h == 0 and j % 2**h == 0)
  np.testing.assert_array_equal(geo.level_of_site(), expected)


@pytest.mark.parametrize("order", geometry.LAYER_ORDERS)
@pytest.mark.parametrize("layer", geometry.LAYERS)
@pytest.mark.parametrize("edge,k,c", [(8, 4, 1), (16, 4, 3), (8, 2, 2), (4, 4, 1)])
def test_blocks_hold_the_right_sites(order, layer, edge, k, c):
  x = np.arange(edge * edge * c, dtype=np.float32).reshape(1, edge, edge, c)
  shift = geometry.layer_shift(layer, k, order)
  blocks = np.asarray(geometry.to_blocks(x, k, shift))
  assert blocks.shape == (1, (edge // k) ** 2, k, k, c)
  ids = block_ids(edge, k, layer, order)
  for b in range(blocks.shape[1]):
    want = np.sort(x[0][ids == b].reshape(-1))
    np.testing.assert_array_equal(np.sort(blocks[0, b].reshape(-1)), want)
  np.testing.assert_array_equal(np.asarray(geometry.from_blocks(blocks, shift)), x)


@pytest.mark.parametrize("order,shifted", [("paper", geometry.DISENTANGLER),
                                           ("authors", geometry.DECIMATOR)])
def test_the_shifted_layer_is_shifted_by_half_a_block(order, shifted):
  # Paper eq. 8: block (0, 0) of the disentangler starts at site (k/2, k/2); the
  # authors' code shifts the decimator instead, and aligns the disentangler.
  geo = Geometry(8, 1, 4, order)
  assert geo.shift(shifted) == 2 and sum(geo.shift(l) for l in geometry.LAYERS) == 2
  x = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
  blocks = np.asarray(geometry.to_blocks(x, 4, geo.shift(shifted)))
  np.testing.assert_array_equal(blocks[0, 0, :, :, 0], x[0, 2:6, 2:6, 0])
  # Periodic wrap: the last block covers rows 6, 7, 0, 1.
  np.testing.assert_array_equal(blocks[0, 3, :, 0, 0], x[0, [6, 7, 0, 1], 6, 0])
  with pytest.raises(ValueError, match="layer_order must be one of"):
    Geometry(8, 1, 4, "mera")


def test_coarse_sites_round_trip():
  x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
  coarse = geometry.coarse_sites(x)
  np.testing.assert_array_equal(np.asarray(coarse), x[:, ::2, ::2])
  new = np.zeros_like(coarse)
  y = np.asarray(geometry.with_coarse_sites(x, new))
  assert (y[:, ::2, ::2] == 0).all()
  keep = np.ones((8, 8), bool)
  keep[::2, ::2] = False
  np.testing.assert_array_equal(y[:, keep], x[:, keep])
