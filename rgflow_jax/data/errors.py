
"""The one exception the data layer raises for bad or missing input."""

from rgflow_jax.core.errors import RGFlowError


class DataError(RGFlowError, ValueError):
  """Missing, unreadable or malformed data; the message says how to fix it."""
