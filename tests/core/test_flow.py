"""What both flows share from their base (rgflow_jax.core.flow.Flow): config keys checked,
the parameter count from shapes alone, latents per level, temperatures per level, the
prior's log-density and NHWC inputs checked in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_flow, tiny_realnvp
from rgflow_jax import RealNVP
from rgflow_jax.core import priors

FLOWS = {"rgflow": lambda: tiny_flow(8, 2, 4), "realnvp": lambda: tiny_realnvp(8, 2)}


@pytest.mark.parametrize("name", FLOWS)
def test_counts_of_parameters_and_latents(name):
  flow = FLOWS[name]()
  params = flow.init(jax.random.PRNGKey(0))
  assert flow.count_params() == flow.num_params(params) > 0
  assert sum(flow.latents_per_level()) == flow.num_dims == 8 * 8 * 2
  levels = flow.level_of_site()
  assert levels.shape == (8, 8) and set(np.unique(levels)) == set(range(flow.num_levels))


@pytest.mark.parametrize("name", FLOWS)
def test_temperatures_per_level_scale_the_prior_of_their_sites(name):
  flow = FLOWS[name]()
  z = jax.random.normal(jax.random.PRNGKey(1), (2,) + flow.event_shape)
  temps = jnp.arange(1, flow.num_levels + 1, dtype=jnp.float32) * 0.5
  t_map = np.asarray(flow.temperature_map(temps))
  assert t_map.shape == (8, 8, 1)
  np.testing.assert_array_equal(t_map[..., 0], np.asarray(temps)[flow.level_of_site()])
  want = priors.log_density(flow.prior, z, jnp.asarray(t_map)).reshape(2, -1).sum(axis=1)
  np.testing.assert_allclose(flow.prior_log_prob(z, temps), want, rtol=1e-6)
  assert float(flow.temperature_map(0.7)) == pytest.approx(0.7)
  with pytest.raises(ValueError, match=f"one per level \\({flow.num_levels} values\\)"):
    flow.temperature_map(jnp.ones(flow.num_levels + 1))


def test_unknown_config_keys_and_non_nhwc_images_are_one_line():
  with pytest.raises(ValueError, match=r"unknown RealNVP config keys \['block_size'\]"):
    RealNVP.from_config({"name": "realnvp", "image_size": 8, "block_size": 4})
  flow = tiny_flow(8, 2, 4)
  with pytest.raises(ValueError, match=r"expects an array of shape \(batch, 8, 8, 2\) "
                     r"\(NHWC\), got \(1, 2, 8, 8\)"):
    flow.bits_per_dim({}, np.zeros((1, 2, 8, 8), np.uint8), jax.random.PRNGKey(0))
