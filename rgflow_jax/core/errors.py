"""The base of every error rgflow-jax raises on purpose.

Each such error's message is one line that says what is wrong and how to fix it; the
commands (rgflow-train, rgflow-eval, rgflow-compare, rgflow-convert) catch
:class:`RGFlowError` and print it as ``error: <message>``. The subclasses keep the
built-in class a caller would expect beside it (``DataError`` is also a ``ValueError``,
``StorageError`` an ``OSError``), so existing ``except ValueError`` code still works.
"""


class RGFlowError(Exception):
  """An error of rgflow-jax whose message is one line: what is wrong, how to fix it."""
