"""Which platform JAX will run on, decided without importing or starting JAX (the CPU
process tuning must know before JAX starts; multi-host set-up picks CPU collectives)."""

from __future__ import annotations

import os


def _accelerator_plugins() -> list[str]:
  """JAX's GPU/TPU plugins installed here (entry points, ``jax_plugins.*``, libtpu)."""
  import importlib.metadata  # noqa: PLC0415
  import importlib.util  # noqa: PLC0415
  found = [ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")]
  for module in ("libtpu", "jax_plugins"):
    try:
      if importlib.util.find_spec(module) is not None:
        found.append(module)
    except (ImportError, ValueError):
      pass
  return found


def runs_on_cpu(environ=None, plugins: list[str] | None = None) -> bool:
  """Whether JAX will pick the CPU, decided without starting a backend: the first entry
  of ``JAX_PLATFORMS`` if set, else whether no accelerator plugin is installed (a host
  with a plugin but no working device then goes untuned, which is only slower)."""
  environ = os.environ if environ is None else environ
  platforms = environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return platforms.split(",")[0].strip().lower() == "cpu"
  return not (_accelerator_plugins() if plugins is None else plugins)


def user_cache_dir(environ=None) -> str:
  """This user's cache folder for rgflow-jax: ``$XDG_CACHE_HOME/rgflow_jax`` (default
  ``~/.cache/rgflow_jax``)."""
  environ = os.environ if environ is None else environ
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "rgflow_jax")


def use_compilation_cache(setting: str) -> str | None:
  """JAX's persistent compilation cache as ``config.execution.compilation_cache_dir`` says:
  "auto" (the default; also "", the default of runs saved before it) keeps a folder JAX
  was already given (``JAX_COMPILATION_CACHE_DIR``) or uses :func:`user_cache_dir`/xla;
  a path (local or gs://) uses it; "off": none.
  Returns the folder in use (None: off). A resumed run, an evaluation or a second run of
  one config then loads its programs instead of compiling them."""
  import jax  # noqa: PLC0415
  setting = str(setting or "auto")
  if setting == "off":
    return None
  if setting == "auto":
    setting = jax.config.jax_compilation_cache_dir or os.path.join(user_cache_dir(), "xla")
  if jax.config.jax_compilation_cache_dir != setting:
    jax.config.update("jax_compilation_cache_dir", setting)
  return setting
