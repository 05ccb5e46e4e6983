"""Which platform JAX will run on, decided without a backend, and the compilation cache's
folder."""

import jax

from rgflow_jax.io import platform


def test_runs_on_cpu_is_decided_without_a_backend():
  assert platform.runs_on_cpu({"JAX_PLATFORMS": "cpu"}, plugins=["xla_cuda12"])
  assert not platform.runs_on_cpu({"JAX_PLATFORMS": "cuda,cpu"}, plugins=[])
  assert not platform.runs_on_cpu({"JAX_PLATFORMS": "tpu"}, plugins=[])
  assert not platform.runs_on_cpu({}, plugins=["libtpu"])
  assert platform.runs_on_cpu({}, plugins=[])


def test_the_user_cache_folder_follows_xdg(tmp_path):
  assert platform.user_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == \
      str(tmp_path / "rgflow_jax")
  assert platform.user_cache_dir({}).endswith("/.cache/rgflow_jax")


def test_the_compilation_cache_setting_keeps_a_given_folder_or_turns_off():
  given = jax.config.jax_compilation_cache_dir  # the suite's (conftest sets it)
  assert given
  assert platform.use_compilation_cache("off") is None
  assert platform.use_compilation_cache("auto") == given
  assert platform.use_compilation_cache("") == given  # runs saved before the key
  assert jax.config.jax_compilation_cache_dir == given
