"""A cone's tables against the inference cone of rgflow_jax.core.cones, one program for every
position, and the flows and regions that are refused."""

import jax
import numpy as np
import pytest

from helpers import CONE_CASES, square_region, tiny_flow
from rgflow_jax.core import cones, local


@pytest.mark.parametrize("L,C,order,size,positions", CONE_CASES)
def test_the_tables_hold_the_inference_cone(L, C, order, size, positions):
  flow = tiny_flow(L, C, 4, layer_order=order)
  for top, left in positions:
    cone = local.Cone.for_box(flow, top, left, size, size)
    sites = np.zeros(L * L, bool)
    for tab in cone.stages:
      sites[tab.image_sites[tab.holds_latent & tab.real[:, None]]] = True
    want = cones.inference_cone(flow.geometry, square_region(L, top, left, size))
    np.testing.assert_array_equal(sites.reshape(L, L), want)
    assert cone.n_latents == int(want.sum())
  # One program for every position: the same static plan and padded shapes.
  structures = {jax.tree.structure(local.Cone.for_box(flow, i, j, size, size))
                for i in range(0, L, 3) for j in range(0, L, 5)}
  shapes = {tuple(x.shape for x in jax.tree.leaves(local.Cone.for_box(flow, i, j, size, size)))
            for i in range(0, L, 3) for j in range(0, L, 5)}
  assert len(structures) == 1 and len(shapes) == 1


def test_an_edit_of_a_fine_latent_touches_a_few_blocks():
  flow = tiny_flow(32, 3, 4)
  cone = local.Cone.for_latent_box(flow, 1, 1, 1, 1)  # a level-0 latent
  real = sum(int(t.real.sum()) for t in cone.stages)
  every = 2 * sum(flow.geometry.blocks_per_side(h) ** 2 for h in range(flow.num_levels))
  assert real == 1 + 4 and every == 170  # one decimator block, the 4 disentanglers it meets
  # Padded over every position, the box's plan holds all 170 (the top level's sites
  # reach every block); padded over level-0 sites only, a site's plan holds 24.
  assert sum(st.n_blocks for st in cone.plan.stages) == 170
  site = local.Cone.for_latent_site(flow, 1, 1)
  assert [st.n_blocks for st in site.plan.stages] == [0, 0, 0, 0, 0, 0, 8, 16]
  assert sum(int(t.real.sum()) for t in site.stages) == real
  with pytest.raises(ValueError, match="a plan by level is for the generation cone"):
    local.make_plan(flow, 2, 1, True, site_level=0)


def test_globally_connected_flows_and_oversized_regions_are_refused():
  from helpers import tiny_realnvp  # noqa: PLC0415
  with pytest.raises(ValueError, match="RealNVP is globally connected"):
    local.Cone.for_box(tiny_realnvp(8, 1), 0, 0, 2, 2)
  with pytest.raises(ValueError, match="does not fit a 16 x 16 image"):
    local.Cone.for_latent_box(tiny_flow(16, 1, 4), 0, 0, 17, 2)
  with pytest.raises(ValueError, match="non-empty"):
    local.bounding_box(np.zeros((16, 16), bool))
  region = np.zeros((16, 16), bool)
  region[np.ix_([15, 0, 1], [14, 15, 0])] = True  # across both periodic edges
  assert local.bounding_box(region) == (15, 14, 3, 3)
