"""Cones along one axis: intervals wrap, blocks and their sites invert each other, a pixel's
inference cone grows by one block per layer and halves at each level, and the most blocks
over every offset bound each cone."""

import numpy as np

from helpers import tiny_flow
from rgflow_jax.core.local import axes


def test_intervals_wrap_and_blocks_hold_the_sites_they_touch():
  np.testing.assert_array_equal(np.flatnonzero(axes.interval(14, 4, 16)), [0, 1, 14, 15])
  mask = axes.interval(6, 3, 16)
  for shift in (0, 2):
    blocks = axes.blocks_touching(mask, 4, shift)
    sites = axes.sites_of(blocks, 4, shift, 16)
    assert set(np.flatnonzero(mask)) <= set(sites.reshape(-1))
    assert all(mask[row].any() for row in sites)  # no block without a touched site
  np.testing.assert_array_equal(axes.sites_of(np.array([3]), 4, 2, 16), [[14, 15, 0, 1]])


def test_a_single_sites_cones_along_an_axis():
  flow = tiny_flow(16, 1, 4)  # 3 levels of (disentangler shift 2, decimator shift 0)
  cone = axes.inference_axis(flow, 5, 1)
  # A site is in one disentangler block; that block's 4 sites meet 2 decimator blocks.
  assert [len(cone[0]["dis"]), len(cone[0]["dec"])] == [1, 2]
  most = axes.most_blocks(flow, 1, False)
  for level, limits in zip(cone, most, strict=True):
    assert all(len(level[layer]) <= limits[layer] for layer in level)
  # Site 5 holds a level-0 latent: its edit reaches one decimator block of level 0 and
  # the disentanglers that block meets, nothing above; site 4's (a coarser latent)
  # reaches every level.
  fine = axes.generation_axis(flow, 5, 1)
  assert [len(fine[0]["dec"]), len(fine[0]["dis"])] == [1, 2]
  assert all(len(blocks) == 0 for level in fine[1:] for blocks in level.values())
  coarse = axes.generation_axis(flow, 4, 1)
  assert all(len(blocks) > 0 for level in coarse for blocks in level.values())
