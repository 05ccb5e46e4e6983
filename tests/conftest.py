"""The suite's process settings and fixtures (float64); shared helpers are in helpers.py."""

import contextlib
import os

# The suite is bound by XLA compile time, not run time: compile with fewer LLVM passes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Many tests compile the same programs (smoke models of several configs, subprocess
# runs): share compiled executables through JAX's persistent cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# An allocator choice (huge pages for glibc's malloc), so that train.py and eval.py run
# as subprocesses do not restart themselves with one (rgflow_jax.cli.xla_cpu.use_fast_malloc).
os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
# The XLA flag the commands set on CPU (rgflow_jax.cli.xla_cpu), set here too: tests in
# this process then compile what train.py and eval.py run as subprocesses compile, with
# the same flags, so the persistent cache serves both.
from rgflow_jax.cli import xla_cpu  # noqa: E402

xla_cpu.configure()

import jax
import jax.numpy as jnp
import pytest


@contextlib.contextmanager
def _float64():
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", old)


@pytest.fixture
def x64():
  """Run the test with float64 enabled, restoring the previous setting after."""
  with _float64():
    yield jnp.float64


@pytest.fixture(scope="module")
def x64_module():
  """float64 for a whole module (its compiled programs shared between its tests)."""
  with _float64():
    yield
