"""Real NVP specifics: its level map (the factor-out order), squeeze, sizing to a
parameter count, and the sizes it refuses. The bijection tests it shares with RG-Flow
are in test_registry.py."""

import jax
import numpy as np
import pytest

from rgflow_jax import RealNVP
from rgflow_jax.core.realnvp import squeeze, unsqueeze


def test_realnvp_levels_follow_the_factor_out_order():
  flow = RealNVP(image_size=32, channels=3, num_scales=4)
  lvl = flow.level_of_site()
  rows = np.arange(32)
  # Scale 0 factors out the di = 0 half of the first squeeze: the even rows; then
  # rows 1 mod 4, rows 3 mod 8; the last scale keeps rows 7 mod 8.
  want = np.select([rows % 2 == 0, rows % 4 == 1, rows % 8 == 3], [0, 1, 2], 3)
  np.testing.assert_array_equal(lvl, np.repeat(want[:, None], 32, axis=1))
  assert flow.latents_per_level() == (1536, 768, 384, 384)


def test_realnvp_squeeze_round_trip_and_layout():
  x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
  s = np.asarray(squeeze(x))
  assert s.shape == (2, 2, 3, 12)
  np.testing.assert_array_equal(s[1, 1, 2].reshape(2, 2, 3), x[1, 2:4, 4:6])  # (di, dj, c)
  np.testing.assert_array_equal(np.asarray(unsqueeze(s)), x)


@pytest.mark.parametrize("target", [15_744, 208_896, 80_518_144])
def test_realnvp_sized_to_a_parameter_count(target):
  flow = RealNVP(image_size=32, channels=3, n_res=1 if target < 10**6 else 2,
                 target_params=target)
  shapes = jax.eval_shape(flow.init, jax.random.PRNGKey(0))
  count = flow.num_params(shapes)
  assert count == flow.params_for_width(flow.hidden)  # the analytic count is init's
  # the closest width: one step either way is further from the target
  for h in (flow.hidden - 1, flow.hidden + 1):
    assert abs(flow.params_for_width(h) - target) >= abs(count - target)
  if target > 10**5:
    assert abs(count - target) / target < 0.01


def test_realnvp_rejects_sizes_it_cannot_squeeze():
  with pytest.raises(ValueError, match="divisible by 8"):
    RealNVP(image_size=12, num_scales=4)
  with pytest.raises(ValueError, match="prior"):
    RealNVP(image_size=8, num_scales=2, prior="cauchy")
