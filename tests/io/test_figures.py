"""The figures (rgflow_jax.io.figures): each writes a PNG of the size asked for, drawn
on a matplotlib Figure of its own (no pyplot: test_package checks that importing the
package does not import it)."""

import json

import numpy as np
from PIL import Image

from rgflow_jax.io import figures


def _png(path) -> tuple[int, int]:
  with Image.open(path) as im:
    assert im.format == "PNG"
    return im.size


def test_each_figure_is_a_png_of_its_size(tmp_path):
  rows = [{"step": s, "minutes": s / 10, "train_bpd": 5.0 - s / 10} for s in range(1, 6)]
  rows[-1]["test_bpd"] = 4.6
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  curve = figures.plot_bpd_curve(tmp_path / "metrics.jsonl", tmp_path / "curve.png",
                               reference={"paper": ([0.1, 0.5], [5.0, 4.5])})
  assert _png(curve) == (6 * 120, 4 * 120)  # figsize x dpi
  maps = figures.plot_maps(np.random.default_rng(0).random((7, 8, 8)),
                         [f"latent {i}" for i in range(7)], tmp_path / "maps.png", ncol=4,
                         suptitle="receptive fields")
  assert _png(maps) == (900, 475)  # (2.25 x 4, 2 x 2 + 0.75) inches x 100 dpi
  hist = figures.plot_histograms({"level 0": np.geomspace(1e-3, 1, 50), "level 1": [0.0, 0.2]},
                               tmp_path / "hist.png", xlabel="strength")
  assert _png(hist) == (720, 480)
  grid = figures.save_grid(np.zeros((6, 4, 4, 3), np.uint8), tmp_path / "grid.png", ncol=3,
                         scale=2)
  assert _png(tmp_path / "grid.png") == grid.shape[1::-1]


def test_grid_labels_sit_above_their_columns_and_left_of_their_rows(tmp_path):
  """A labelled mosaic: the cells unchanged, a white strip with each column's label
  above that column and each row's label left of that row (ink where the text is)."""
  images = np.full((6, 4, 4, 3), 40, np.uint8)
  plain = figures.grid_image(images, ncol=3, scale=4)
  labelled = np.asarray(figures.grid_image(images, ncol=3, scale=4,
                                         columns=["a", "b", "c"], rows=["row 1", "row 2"]))
  top = labelled.shape[0] - plain.height
  left = labelled.shape[1] - plain.width
  assert top > 0 and left > 0
  np.testing.assert_array_equal(labelled[top:, left:], np.asarray(plain))
  cell = (4 + 1) * 4
  for q in range(3):  # ink above each column, within its width
    strip = labelled[:top, left + q * cell + 4:left + (q + 1) * cell]
    assert (strip < 128).any(), q
  for r in range(2):  # ink left of each row, within its height
    strip = labelled[top + r * cell + 4:top + (r + 1) * cell, :left]
    assert (strip < 128).any(), r
  assert (labelled[:top, :left] == 255).all()  # the corner stays blank
  side = figures.save_side_by_side([plain, figures.grid_image(images, 2)], tmp_path / "two.png")
  assert side.shape[1] == plain.width + 12 + figures.grid_image(images, 2).width
