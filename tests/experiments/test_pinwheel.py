"""The 2-D pinwheel experiment (App. E), its parts: the data, the flow, the purity measure
(the run itself is in tests/e2e/test_pinwheel.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import pinwheel


def test_pinwheel_data_has_four_separated_arms():
  x, arms = pinwheel.sample_pinwheel(jax.random.PRNGKey(0), 4000)
  x, arms = np.asarray(x), np.asarray(arms)
  assert x.shape == (4000, 2) and set(np.unique(arms)) == {0, 1, 2, 3}
  # each arm is far from the origin and its mean direction is 90 degrees from the next
  means = np.stack([x[arms == a].mean(0) for a in range(4)])
  ang = np.degrees(np.arctan2(means[:, 1], means[:, 0]))
  np.testing.assert_allclose(np.diff(np.unwrap(np.radians(ang))), np.pi / 2, atol=0.1)


def test_coupling_flow_inverts_with_exact_log_det(x64):
  params = pinwheel.init_flow(jax.random.PRNGKey(0), n_layers=4, hidden=8)
  params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(1), a.shape,
                                                              a.dtype), params)
  x = jax.random.normal(jax.random.PRNGKey(2), (5, 2), jnp.float64)
  z, ld = pinwheel.encode(params, x)
  np.testing.assert_allclose(pinwheel.decode(params, z), x, atol=1e-12)
  assert float(jnp.max(jnp.abs(z - x))) > 0.1
  for i in range(5):
    jac = jax.jacfwd(lambda v: pinwheel.encode(params, v[None])[0][0])(x[i])
    assert float(ld[i]) == pytest.approx(float(jnp.linalg.slogdet(jac)[1]), abs=1e-10)


def test_purity_measure():
  groups = np.repeat(np.arange(4), 100)
  perfect = pinwheel.purity(groups, (groups + 1) % 4)
  assert perfect["purity"] == 1.0 and perfect["distinct"]
  assert perfect["majority_arms"] == [1, 2, 3, 0]
  half = pinwheel.purity(groups, np.where(np.arange(400) % 2 == 0, groups, 0))
  assert half["purity"] == pytest.approx((1.0 + 0.5 * 3) / 4)
  assert not half["distinct"]  # every group's majority is ... its own arm or arm 0
  np.testing.assert_array_equal(pinwheel.quadrant(np.array([[1, 1], [-1, 1], [-1, -1],
                                                            [1, -1]])), [0, 1, 2, 3])
