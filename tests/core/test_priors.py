"""The priors' log-densities against scipy, and their samples' scale at a temperature."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rgflow_jax.core import priors


@pytest.mark.parametrize("t", [1.0, 0.5, 2.3])
def test_prior_log_densities_match_scipy(x64, t):
  z = jnp.linspace(-4, 4, 41, dtype=jnp.float64)
  np.testing.assert_allclose(priors.log_density("laplace", z, t),
                             stats.laplace(scale=t / math.sqrt(2)).logpdf(z), rtol=1e-12)
  np.testing.assert_allclose(priors.log_density("gaussian", z, t),
                             stats.norm(scale=t).logpdf(z), rtol=1e-12)


@pytest.mark.parametrize("name", priors.PRIORS)
def test_prior_samples_have_the_temperature_as_std(name):
  z = priors.sample(name, jax.random.PRNGKey(0), (200_000,), temperature=0.6)
  assert abs(float(jnp.std(z)) - 0.6) < 0.01
  kurt = stats.kurtosis(np.asarray(z))
  assert abs(kurt - (3.0 if name == "laplace" else 0.0)) < 0.3
