"""XLA:CPU defaults that make training faster, applied when the package is imported.

With jaxlib 0.10, XLA:CPU sends every matrix product to YNNPACK. For this model's
products (thousands of rows, 24 to 512 wide) Eigen's kernels are faster: measured with
``python -m rgflow_jax.bench`` on a 2-core Xeon, a training step takes 0.028 s instead
of 0.042 s (tiny), 0.20 s instead of 0.26 s (small) and 11.6 s instead of 12.9 s
(paper-msds). So, unless told otherwise, importing ``rgflow_jax`` adds

    --xla_cpu_experimental_ynn_fusion_type=     (an empty list: no YNNPACK fusions)

to ``XLA_FLAGS``. It only changes CPU compilation, and only when all of these hold:
the variable does not already set that flag (yours wins), ``RGFLOW_XLA_DEFAULTS`` is
not ``0``, the jaxlib version is one this was measured on (an unknown flag would stop
a newer XLA at start-up), and JAX has not started a backend yet (flags are read once).
"""

from __future__ import annotations

import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
TESTED_JAXLIB = ("0.10.",)


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # noqa: PLC0415
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # noqa: BLE001  (private API; assume the safe answer)
    return True


def _jaxlib_version() -> str:
  try:
    from jaxlib import version  # noqa: PLC0415
    return version.__version__
  except Exception:  # noqa: BLE001
    return ""


def configure(environ=None, jaxlib_version: str | None = None,
              backends_started: bool | None = None) -> bool:
  """Add the flag to ``environ['XLA_FLAGS']`` if the conditions above hold.

  Returns whether it changed anything. The arguments exist for tests; by default
  they are read from the process.
  """
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS", "")
  if environ.get("RGFLOW_XLA_DEFAULTS", "1") == "0" or YNN_FLAG in flags:
    return False
  version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
  if not version.startswith(TESTED_JAXLIB):
    return False
  if _backends_started() if backends_started is None else backends_started:
    return False
  environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=".strip()
  return True
