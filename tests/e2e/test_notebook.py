"""The Colab notebook, executed end to end on CPU at smoke size, so it cannot rot; with
rgflow_jax importable it installs nothing. Its last cell shows the explorer inline, and
the server it started answers while the kernel lives."""


import json
import re
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import ROOT


@pytest.mark.campaign
def test_notebook_runs_and_shows_its_figures(tmp_path, monkeypatch):
  monkeypatch.setenv("RGFLOW_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("RGFLOW_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  nb = nbformat.read(ROOT / "notebooks" / "rgflow_jax.ipynb", as_version=4)
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(ROOT)}})
  with client.setup_kernel():  # the kernel lives on after the last cell: its server too
    for index, cell in enumerate(nb.cells):
      client.execute_cell(cell, index)
    # The explorer's cell: the page inline (an IFrame of the server the kernel runs),
    # and that server answers this process.
    shown = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    url = re.search(r"explorer at (http://127\.0\.0\.1:\d+/)", shown).group(1)
    frames = [o for o in nb.cells[-1].outputs if "<iframe" in o.get("data", {}).get(
        "text/html", "")]
    assert len(frames) == 1 and f'src="{url}"' in frames[0]["data"]["text/html"]
    with urllib.request.urlopen(url + "api/info", timeout=60) as r:
      assert json.loads(r.read())["image_size"] == 32
    with urllib.request.urlopen(url, timeout=60) as r:
      assert b"RG-Flow explorer" in r.read()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 5  # samples, receptive fields, mixing, inpainting, curve
  text = "".join(o.get("text", "") for o in outputs)
  assert "test bits/dim:" in text and "inpainting PSNR" in text
  # rgflow_jax was importable (from this checkout): nothing was installed.
  assert f"from {ROOT / 'rgflow_jax'}" in text
  assert "colab.research.google.com/github/" in "".join(nb.cells[0].source)
  assert (tmp_path / "run" / "eval" / "eval.json").is_file()
