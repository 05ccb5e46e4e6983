"""The one exception the data layer raises for bad or missing input."""


class DataError(ValueError):
  """Missing, unreadable or malformed data; the message says how to fix it."""
