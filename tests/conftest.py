"""Shared fixtures: float64 switch, perturbed (non-identity) parameters, tiny models."""

import functools
import os

# The suite is bound by XLA compile time, not run time: compile with fewer LLVM passes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Many tests compile the same programs (smoke models of several configs, subprocess
# runs): share compiled executables through JAX's persistent cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# An allocator choice (huge pages for glibc's malloc), so that train.py and eval.py run
# as subprocesses do not restart themselves with one (rgflow_jax.xla_cpu.use_fast_malloc).
os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")

import jax
import jax.flatten_util
import jax.numpy as jnp
import pytest

from rgflow_jax import RGFlow, RealNVP


@pytest.fixture
def x64():
  """Run the test with float64 enabled, restoring the previous setting after."""
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  yield jnp.float64
  jax.config.update("jax_enable_x64", old)


@functools.partial(jax.jit, static_argnums=2)
def perturb(params, rng, scale=0.2):
  """Random non-identity parameters: every leaf (the zero-init scales too) + noise."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  return unravel(flat + scale * jax.random.normal(rng, flat.shape, flat.dtype))


def tiny_flow(image_size=8, channels=1, block_size=4, **kw):
  kw = {"n_layers": 2, "n_res": 1, "hidden": 16, "mlp_depth": 1, **kw}
  return RGFlow(image_size=image_size, channels=channels, block_size=block_size, **kw)


def random_flow(image_size=8, channels=1, block_size=4, dtype=jnp.float32, seed=0, **kw):
  flow = tiny_flow(image_size, channels, block_size, **kw)
  params = perturb(flow.init(jax.random.PRNGKey(seed), dtype),
                   jax.random.PRNGKey(seed + 1))
  return flow, params


def tiny_realnvp(image_size=8, channels=1, **kw):
  kw = {"num_scales": 3 if image_size <= 16 else 4, "hidden": 8, "n_res": 1,
        "n_checker": 2, "n_channel": 2, **kw}
  return RealNVP(image_size=image_size, channels=channels, **kw)


# The model registry the shared bijection tests run over: name -> (factory, scale of
# the parameter perturbation that keeps the random flow well conditioned in float32).
MODEL_ZOO = {
    "rgflow": (tiny_flow, 0.2),
    "realnvp": (tiny_realnvp, 0.02),
}


def zoo_flow(name, image_size=8, channels=1, dtype=jnp.float32, seed=0, **kw):
  """(flow, random non-identity params) of a small model of the registry."""
  factory, scale = MODEL_ZOO[name]
  flow = factory(image_size, channels, **kw)
  params = perturb(flow.init(jax.random.PRNGKey(seed), dtype), jax.random.PRNGKey(seed + 1),
                   scale)
  return flow, params
