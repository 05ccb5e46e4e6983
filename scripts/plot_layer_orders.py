#!/usr/bin/env python3
"""The figure of the two layer orders: ``python scripts/plot_layer_orders.py [OUT.png]``.

Levels 0 and 1 of a 16 x 16 image with 4 x 4 blocks, for ``layer_order="paper"``
and ``"authors"``: the blocks of the first layer (the disentangler) and of the second
(the decimator) in the RG direction, drawn from rgflow_jax.core.cones.block_ids, and the
inference cone of one pixel. Writes docs/layer_order.png by default.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgflow_jax import Geometry  # noqa: E402
from rgflow_jax.core import cones
from rgflow_jax.core.geometry import DECIMATOR, DISENTANGLER  # noqa: E402

L, K = 16, 4


def _blocks(ax, ids, title):
  side = int(np.sqrt(ids.max() + 1))  # blocks per side, a checkerboard of blocks
  colours = np.array([((b // side + b % side) % 2) * 0.35 + 0.45 for b in range(side * side)])
  ax.imshow(colours[ids], cmap="Blues", vmin=0, vmax=1)
  for i in range(ids.shape[0]):
    for j in range(ids.shape[1]):
      ax.text(j, i, str(ids[i, j]), ha="center", va="center", fontsize=5)
  ax.set_title(title, fontsize=8)
  ax.set_xticks([])
  ax.set_yticks([])


def main(out=ROOT / "docs" / "layer_order.png"):
  fig, axes = plt.subplots(2, 5, figsize=(13, 6.4))
  pixel = np.zeros((L, L), bool)
  pixel[5, 5] = True
  for row, order in enumerate(("paper", "authors")):
    geo = Geometry(L, 1, K, order)
    col = 0
    for level in (0, 1):
      edge = geo.edge(level)
      for layer, name in ((DISENTANGLER, "1st: disentangler"), (DECIMATOR, "2nd: decimator")):
        shift = "shifted" if geo.shift(layer) else "aligned"
        _blocks(axes[row, col], cones.block_ids(edge, K, layer, order),
                f"{order}: level {level} {name}\n({shift}, {edge}x{edge} sub-lattice)")
        col += 1
    cone = cones.inference_cone(geo, pixel)
    axes[row, col].imshow(cone.astype(float) + 2.0 * pixel, cmap="Oranges", vmin=0, vmax=3)
    axes[row, col].set_title(f"{order}: inference cone of pixel (5, 5)\n"
                             f"{int(cone.sum())} latent sites", fontsize=8)
    axes[row, col].set_xticks([])
    axes[row, col].set_yticks([])
  fig.suptitle("Block layouts of the two layer orders (numbers: block index; RG direction "
               "left to right)", fontsize=10)
  fig.tight_layout()
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


if __name__ == "__main__":
  main(*sys.argv[1:])
