"""The figures (rgflow_jax.paper.plots): each writes a PNG of the size asked for, drawn
on a matplotlib Figure of its own (no pyplot: test_package checks that importing the
package does not import it)."""

import json

import numpy as np
from PIL import Image

from rgflow_jax.paper import plots


def _png(path) -> tuple[int, int]:
  with Image.open(path) as im:
    assert im.format == "PNG"
    return im.size


def test_each_figure_is_a_png_of_its_size(tmp_path):
  rows = [{"step": s, "minutes": s / 10, "train_bpd": 5.0 - s / 10} for s in range(1, 6)]
  rows[-1]["test_bpd"] = 4.6
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  curve = plots.plot_bpd_curve(tmp_path / "metrics.jsonl", tmp_path / "curve.png",
                               reference={"paper": ([0.1, 0.5], [5.0, 4.5])})
  assert _png(curve) == (6 * 120, 4 * 120)  # figsize x dpi
  maps = plots.plot_maps(np.random.default_rng(0).random((7, 8, 8)),
                         [f"latent {i}" for i in range(7)], tmp_path / "maps.png", ncol=4,
                         suptitle="receptive fields")
  assert _png(maps) == (2 * 4 * 100, int((2 * 2 + 0.5) * 100))
  hist = plots.plot_histograms({"level 0": np.geomspace(1e-3, 1, 50), "level 1": [0.0, 0.2]},
                               tmp_path / "hist.png", xlabel="strength")
  assert _png(hist) == (720, 480)
  grid = plots.save_grid(np.zeros((6, 4, 4, 3), np.uint8), tmp_path / "grid.png", ncol=3,
                         scale=2)
  assert _png(tmp_path / "grid.png") == grid.shape[1::-1]
