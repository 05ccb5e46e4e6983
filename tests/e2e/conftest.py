"""The end-to-end tier is this folder: every test here carries the ``e2e`` marker, so that
``make test-fast`` (``-m "not e2e"``) leaves them out. What belongs here: training runs,
real processes (the commands, kills, many processes), the object-store emulator, the
notebook, the wheel in a fresh venv, the benchmarks."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(items):
  for item in items:
    if HERE in Path(item.path).resolve().parents:
      item.add_marker(pytest.mark.e2e)
