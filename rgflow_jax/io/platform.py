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
