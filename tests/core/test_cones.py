"""Causal cones as site masks (rgflow_jax.core.cones), counted by hand."""

import numpy as np
import pytest

from helpers import square_region
from rgflow_jax import Geometry
from rgflow_jax.core import cones


def test_inference_cone_of_a_10x10_region_paper_size():
  geo = Geometry(32, 3, 4)
  counts = [int(cones.inference_cone(geo, square_region(32, r, c)).sum()) * 3
            for r in range(0, 23) for c in range(0, 23)]
  assert min(counts) == 1092 and max(counts) == 1668
  assert 1300 <= np.median(counts) <= 1380  # the paper: "about 1,200" of 3,072


def test_inference_cone_by_hand_for_the_region_at_the_origin():
  """Rows/columns 0..9, counted level by level in the paper's order (dis, then dec).

  Level 0 (edge 32): disentangler blocks start at 2 + 4p (wrap); rows 0..9 meet the
  blocks covering rows 30..1, 2..5, 6..9 -> rows {30, 31, 0..9} (12 rows); the
  decimator blocks (4p..4p+3) then cover rows 28..31 and 0..11 (16 rows). The level-0
  latents are the sites with i or j odd: 16 x 16 sites minus the 8 x 8 even ones = 192.
  Level 1 (edge 16, sub-lattice rows 14, 15, 0..5 touched = 8 rows): disentangler
  blocks start at 2 + 4p -> rows 14, 15, 0..5 stay (they are exactly two blocks);
  decimator -> rows 12..15, 0..7 (12 rows); latents: 12 x 12 - 6 x 6 = 108.
  Level 2 (edge 8, rows 6, 7, 0..3 = 6 rows): disentangler -> rows 6, 7, 0..5 (8 rows:
  everything); all 8 x 8 sites minus the 4 x 4 coarse ones = 48 latents.
  Level 3 (edge 4): all 16 sites. Sites: 192 + 108 + 48 + 16 = 364; x 3 channels = 1092.
  """
  geo = Geometry(32, 3, 4)
  cone = cones.inference_cone(geo, square_region(32, 0, 0))
  lvl = geo.level_of_site()
  assert [int((cone & (lvl == h)).sum()) for h in range(4)] == [192, 108, 48, 16]
  assert cone.sum() * 3 == 1092


def test_inference_cone_by_hand_in_the_authors_order():
  """The same region in the authors' order (aligned disentangler, shifted decimator).

  Level 0: the disentangler's blocks 4p..4p+3 take rows 0..9 to rows 0..11; the
  decimator's blocks 2 + 4p..5 + 4p (wrap) then give rows 30, 31, 0..13 (16 rows):
  16 x 16 - 8 x 8 = 192 latents. Level 1 (edge 16): the coarse rows 15, 0..6 (8 rows);
  disentangler -> rows 12..15, 0..7 (12 rows); decimator -> blocks 10..13, 14..1,
  2..5, 6..9: all 16 rows, 256 - 64 = 192 latents. Level 2: all 8 x 8, 64 - 16 = 48;
  level 3: 16. Sites: 192 + 192 + 48 + 16 = 448; x 3 channels = 1344.
  """
  geo = Geometry(32, 3, 4, "authors")
  cone = cones.inference_cone(geo, square_region(32, 0, 0))
  lvl = geo.level_of_site()
  assert [int((cone & (lvl == h)).sum()) for h in range(4)] == [192, 192, 48, 16]
  assert cone.sum() * 3 == 1344


@pytest.mark.parametrize("order,counts", [("paper", [112, 160, 208, 256, 304]),
                                          ("authors", [112, 220, 328, 436, 544])])
def test_single_pixel_cone_grows_by_a_constant_per_level(order, counts):
  got = []
  for L in [16, 32, 64, 128, 256]:
    m = np.zeros((L, L), bool)
    m[L // 2 + 1, L // 2 + 1] = True
    got.append(int(cones.inference_cone(Geometry(L, 1, 4, order), m).sum()))
  steps = np.diff(got)
  assert (steps == steps[0]).all() and steps[0] > 0  # O(log L), not O(L^2)
  assert got == counts


@pytest.mark.parametrize("order", ["paper", "authors"])
def test_generation_and_inference_cones_are_transposes(order):
  geo = Geometry(16, 1, 4, order)
  dep = cones.dependency_matrix(geo)  # [latent site, pixel]
  lvl = geo.level_of_site()
  for (i, j) in [(1, 1), (2, 6), (4, 12), (0, 0), (8, 8)]:
    gen = cones.generation_cone(geo, int(lvl[i, j]), (i, j))
    np.testing.assert_array_equal(gen.reshape(-1), dep[i * 16 + j])
