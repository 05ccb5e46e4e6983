"""The README's front picture from a trained run (make demo's by default): samples, the
receptive field of each level's strongest latent, and that latent of the top level
traversed. Made with the functional API, as a user would:

    python scripts/front_figure.py runs/msds1-cpu docs/demo/front.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import rgflow_jax  # noqa: E402
from rgflow_jax.core import pixels  # noqa: E402
from rgflow_jax.io import storage  # noqa: E402
from rgflow_jax.io import figures  # noqa: E402
from rgflow_jax.paper import latents, receptive  # noqa: E402


def front_figure(workdir, out, temperature: float = 0.8, rf_samples: int = 8):
  run = rgflow_jax.load(workdir)
  params, flow = run.params, run.flow
  samples = np.asarray(pixels.to_uint8(
      rgflow_jax.sample(params, jax.random.PRNGKey(0), 16, temperature)))
  rng = jax.random.PRNGKey(1)
  strongest, fields = [], []
  for level in range(flow.num_levels):
    sites, strengths = receptive.receptive_field_strengths(flow, params.tree, level, rng,
                                                          rf_samples)
    idx = int(np.argmax(strengths))
    strongest.append(tuple(int(v) for v in sites[idx]))
    fields.append(np.asarray(rgflow_jax.receptive_field(params, level, idx, rng, rf_samples)))
  values = np.linspace(-3.0, 3.0, 7)
  z = flow.sample_latents(jax.random.PRNGKey(2), 1, temperature)
  top = flow.num_levels - 1
  row = latents.traverse(flow, params.tree, z, jnp.asarray(strongest[top]), jnp.asarray(values))
  row = np.asarray(pixels.to_uint8(row[:, 0]))

  fig = Figure(figsize=(12, 4.6))
  grid = fig.add_gridspec(2, 2 + flow.num_levels, height_ratios=(3, 1.1))
  ax = fig.add_subplot(grid[0, :2])
  ax.imshow(figures.image_grid(samples, 4))
  ax.set_title(f"samples, T = {temperature}", fontsize=9)
  ax.axis("off")
  for level, field in enumerate(fields):
    ax = fig.add_subplot(grid[0, 2 + level])
    ax.imshow(field, cmap="viridis", vmin=0.0, vmax=max(float(field.max()), 1e-12))
    ax.set_title(f"level {level}: strongest latent\n(i, j, c) = {strongest[level]}",
                 fontsize=8)
    ax.axis("off")
  ax = fig.add_subplot(grid[1, :])
  ax.imshow(figures.image_grid(row, len(values)))
  ax.set_title(f"level {top}'s strongest latent set to "
               + ", ".join(f"{v:+g}" for v in values), fontsize=9)
  ax.axis("off")
  fig.suptitle(f"RG-Flow, {run.config.data.name}, {run.params.num_params:,} parameters, "
               f"step {run.step} ({run.checkpoint} checkpoint); receptive fields: "
               "E sum_c |dx/dz|, each map from 0 to its maximum", fontsize=9)
  fig.tight_layout()
  storage.save_figure(fig, out, dpi=110)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", nargs="?", default="runs/msds1-cpu")
  parser.add_argument("out", nargs="?", default="docs/demo/front.png")
  args = parser.parse_args()
  print(front_figure(args.workdir, args.out))


if __name__ == "__main__":
  main()
