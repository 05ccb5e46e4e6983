"""Causal cones, level mixing, progressive decoding, traversals and inpainting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_flow, tiny_flow
from rgflow_jax import Geometry, analysis, cones, pixels


def _region(L, top, left, size=10):
  m = np.zeros((L, L), bool)
  m[top:top + size, left:left + size] = True
  return m


def test_inference_cone_of_a_10x10_region_paper_size():
  geo = Geometry(32, 3, 4)
  counts = [int(cones.inference_cone(geo, _region(32, r, c)).sum()) * 3
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
  cone = cones.inference_cone(geo, _region(32, 0, 0))
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
  cone = cones.inference_cone(geo, _region(32, 0, 0))
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


def test_mix_levels_follows_eq_15():
  flow = tiny_flow(16, 3, 4)
  za = jnp.ones((2,) + flow.event_shape)
  zb = -jnp.ones((2,) + flow.event_shape)
  np.testing.assert_array_equal(analysis.mix_levels(flow, za, zb, 0), za)
  np.testing.assert_array_equal(analysis.mix_levels(flow, za, zb, flow.num_levels), zb)
  mixed = np.asarray(analysis.mix_levels(flow, za, zb, 1))
  lvl = flow.level_of_site()
  assert (mixed[:, lvl >= 1] == 1).all() and (mixed[:, lvl == 0] == -1).all()


def test_progressive_decoding_and_traversal():
  flow, params = random_flow(16, 3, 4)
  z = flow.sample_latents(jax.random.PRNGKey(0), 2)
  steps = jax.jit(lambda p, z: analysis.progressive(flow, p, z))(params, z)
  assert steps.shape == (flow.num_levels, 2, 16, 16, 3)
  full = pixels.from_flow(flow.decode(params, z)[0])
  np.testing.assert_allclose(steps[-1], full, atol=1e-6)  # all levels on: the sample
  mode = pixels.from_flow(flow.decode(params, jnp.where(
      analysis.level_mask(flow, [flow.num_levels - 1]), z, 0.0))[0])
  np.testing.assert_allclose(steps[0], mode, atol=1e-6)
  rows = analysis.traverse(flow, params, z, (0, 0, 1), jnp.linspace(-2, 2, 5))
  assert rows.shape == (5, 2, 16, 16, 3)
  assert float(jnp.abs(rows[0] - rows[-1]).max()) > 0


def test_inpainting_an_identity_flow_recovers_the_prior_mode():
  flow = tiny_flow(16, 1, 4)
  params = flow.init(jax.random.PRNGKey(0))  # identity
  truth = np.full((16, 16, 1), 0.5, np.float32)  # pixel value of the prior's mode z = 0
  truth[:4] = 0.9
  region = _region(16, 6, 5, size=4)
  corrupted = np.where(region[..., None], 0.05, truth)
  x, info = analysis.inpaint(flow, params, corrupted, region, jax.random.PRNGKey(1),
                             n_starts=8, steps=300, lr=0.1, truth=truth)
  assert info["psnr"] > 40
  np.testing.assert_array_equal(np.asarray(x)[~region], truth[~region])
  # The optimiser never changed a latent outside the cone: there z is the encoding
  # of the corrupted (= true) image.
  y0, _ = pixels.to_flow(jnp.asarray(corrupted)[None])
  z0 = np.asarray(analysis.encode_jit(flow, params, y0)[0][0])  # compiled by inpaint
  outside = ~np.asarray(info["free_mask"])
  np.testing.assert_array_equal(np.asarray(info["z"])[outside], z0[outside])
  assert info["free_latents"] == int(cones.inference_cone(flow, region).sum())


def test_inpainting_with_random_parameters_improves_on_the_corruption():
  flow, params = random_flow(16, 1, 4)
  truth = np.asarray(flow.sample(params, jax.random.PRNGKey(5), 1, 0.5))[0]
  region = _region(16, 4, 4, size=5)
  corrupted = np.where(region[..., None], 1.0, truth)
  x, info = analysis.inpaint(flow, params, corrupted, region, jax.random.PRNGKey(2),
                             n_starts=16, steps=100, truth=truth)
  assert info["psnr"] > analysis.psnr(corrupted, truth, region[..., None])
  with pytest.raises(ValueError, match="inpaint expects"):
    analysis.inpaint(flow, params, corrupted[:8], region, jax.random.PRNGKey(2))
  with pytest.raises(ValueError, match="how must be"):
    analysis.free_latents(flow, region, "some")
  rnd = analysis.free_latents(flow, region, "random", 0)
  assert rnd.sum() == analysis.free_latents(flow, region, "cone").sum()


def test_psnr_by_hand():
  a = np.zeros((2, 4, 4, 3))
  b = a.copy()
  b[0, 0, 0, 0] = 0.5  # one error of 0.5 among 96 values: mse = 0.25 / 96
  assert abs(analysis.psnr(a, b) - 10 * np.log10(96 / 0.25)) < 1e-12
  mask = np.zeros((2, 4, 4, 1), bool)
  mask[0, :2, :2] = True  # 4 sites x 3 channels = 12 values hold that error
  assert abs(analysis.psnr(a, b, mask) - 10 * np.log10(12 / 0.25)) < 1e-12
  assert analysis.psnr(a, a) == float("inf")
