"""The explorer inline in a notebook: an IFrame of the server's page, or on Colab the
kernel's port proxy; either way the server answers. (The repository's notebook runs
the cell itself in tests/e2e/test_notebook.py.)"""

import json
import sys
import types
import urllib.request

import numpy as np
import pytest

from helpers import random_flow
from rgflow_jax.explore import notebook
from rgflow_jax.explore.session import Explorer


@pytest.fixture(scope="module")
def explorer():
  flow, params = random_flow(16, 1, 4, seed=5, hidden=8)
  return Explorer(flow, params, np.zeros((1, 16, 16, 1), np.uint8), rf_samples=2)


def _answers(server) -> bool:
  with urllib.request.urlopen(server.url + "api/info", timeout=30) as r:
    return json.loads(r.read())["image_size"] == 16


def test_show_displays_the_page_in_an_iframe_and_serves_it(explorer, monkeypatch):
  shown = []
  monkeypatch.setattr("IPython.display.display", shown.append)
  monkeypatch.setitem(sys.modules, "google.colab", None)  # not on Colab
  server = notebook.show(explorer, warm_up=False)
  try:
    assert _answers(server)
    (frame,) = shown
    assert frame.src == server.url and frame.height == 900
  finally:
    server.stop()
  shown.clear()
  server = notebook.show(explorer, warm_up=False, proxy="/proxy/{port}/")
  try:
    assert shown[0].src == f"/proxy/{server.port}/" and _answers(server)
  finally:
    server.stop()


def test_on_colab_the_page_goes_through_the_kernels_port_proxy(explorer, monkeypatch):
  calls = []
  output = types.SimpleNamespace(
      serve_kernel_port_as_iframe=lambda port, height: calls.append((port, height)))
  colab = types.ModuleType("google.colab")
  colab.output = output
  monkeypatch.setitem(sys.modules, "google.colab", colab)
  monkeypatch.setattr("IPython.display.display", lambda *_: pytest.fail("no IFrame on Colab"))
  server = notebook.show(explorer, warm_up=False, height=700)
  try:
    assert calls == [(server.port, "700")] and _answers(server)
  finally:
    server.stop()
