"""The explorer as one self-contained HTML file (``rgflow-eval --mode explorer``): the
strongest latents of every level, each with its receptive field and the frames of its
traversal, precomputed, the images inlined as PNG data. It opens offline, from disk,
with no server and nothing fetched.

Which latents: per level, the ``per_level`` latents with the largest receptive-field
strength (the sum of the map, :func:`rgflow_jax.paper.receptive.receptive_field_strengths`).
A traversal sets the latent to each of ``values`` in ``n_images`` prior samples (T = 0.8)
and decodes them (:func:`rgflow_jax.paper.latents.traverse`).
"""

from __future__ import annotations

import base64
import html
import json

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps

from rgflow_jax.core import pixels
from rgflow_jax.explore.session import png_bytes
from rgflow_jax.io import figures, storage
from rgflow_jax.io.progress import bar as progress_bar
from rgflow_jax.paper import latents, receptive

VALUES = tuple(np.linspace(-3.0, 3.0, 9).tolist())


def _data_uri(image_uint8) -> str:
  return "data:image/png;base64," + base64.b64encode(png_bytes(image_uint8)).decode()


def _heat(field) -> np.ndarray:
  """(L, L) receptive field -> (L, L, 3) uint8, coloured from 0 to its maximum."""
  f = np.asarray(field, np.float64)
  rgb = colormaps["magma"](f / max(f.max(), 1e-12))[..., :3]
  return (255 * rgb).round().astype(np.uint8)


def explorer_content(flow, params, rng, rf_samples: int = 8, per_level: int = 3,
                     n_images: int = 3, values=VALUES, progress: bool = False) -> dict:
  """What the file shows, as data: per level, its strongest latents with their
  strength, receptive field (PNG data URI and the raw map) and traversal frames."""
  key_rf, key_z = jax.random.split(rng)
  z = flow.sample_latents(key_z, n_images, 0.8, jax.tree.leaves(params)[0].dtype)
  traverse = jax.jit(lambda p, zz, lat, v: latents.traverse(flow, p, zz, lat, v))
  values = jnp.asarray(values, z.dtype)
  levels = []
  for level in progress_bar(range(flow.num_levels), progress, desc="explorer file",
                            unit="level"):
    sites, strengths, maps = receptive.receptive_field_strengths(
        flow, params, level, key_rf, rf_samples, return_maps=True)
    order = np.argsort(-np.asarray(strengths))[:per_level]
    chosen = []
    for k in order:
      latent = tuple(int(v) for v in sites[k])
      frames = pixels.to_uint8_numpy(traverse(params, z, jnp.asarray(latent), values))
      rows = [figures.image_grid(f, ncol=len(f)) for f in frames]  # the samples side by side
      chosen.append({"latent": latent, "strength": float(strengths[k]),
                     "field": np.asarray(maps[k]), "field_png": _data_uri(_heat(maps[k])),
                     "frames": [_data_uri(r) for r in rows]})
    levels.append({"level": level, "latents": chosen})
  return {"levels": levels, "values": [float(v) for v in values],
          "image_size": flow.image_size, "n_images": n_images, "rf_samples": rf_samples}


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.5em}
.latents{display:flex;flex-wrap:wrap;gap:1.5em}
figure{margin:0;padding:.6em;background:#fff;border:1px solid #ddd;border-radius:6px}
img{image-rendering:pixelated} .field{width:96px;height:96px;margin-right:.6em}
.frames img{height:96px} .frames img:not(.shown){display:none} figure.latent{max-width:30em}
figcaption{margin-top:.4em;color:#555} .row{display:flex;align-items:center}
"""

_SCRIPT = """
for (const fig of document.querySelectorAll('figure.latent')) {
  const frames = fig.querySelectorAll('.frames img');
  const slider = fig.querySelector('input[type=range]');
  const label = fig.querySelector('.value');
  const values = JSON.parse(fig.dataset.values);
  const show = k => { frames.forEach((f, n) => f.classList.toggle('shown', n === k));
                      slider.value = k; label.textContent = values[k].toFixed(2); };
  slider.addEventListener('input', () => show(+slider.value));
  let timer = null;
  fig.querySelector('button').addEventListener('click', e => {
    if (timer) { clearInterval(timer); timer = null; e.target.textContent = 'play'; return; }
    e.target.textContent = 'stop';
    timer = setInterval(() => show((+slider.value + 1) % frames.length), 300);
  });
  show(Math.floor(frames.length / 2));
}
"""


def render_html(content: dict, title: str) -> str:
  """The page of :func:`explorer_content`'s data: inline CSS, JS and images only."""
  values = json.dumps(content["values"])
  parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
           f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{html.escape(title)}</h1><p>The strongest latents of each level (largest "
           f"receptive field, E<sub>z</sub> &sum;<sub>c</sub> |dx/dz| over "
           f"{content['rf_samples']} prior draws), their receptive field (left, coloured "
           f"from 0 to its maximum) and a traversal: the latent set to "
           f"{content['values'][0]:g} &hellip; {content['values'][-1]:g} in "
           f"{content['n_images']} samples at T = 0.8 (slider, or play).</p>"]
  for lv in content["levels"]:
    parts.append(f"<section class=level data-level={lv['level']}><h2>level "
                 f"{lv['level']}</h2><div class=latents>")
    for item in lv["latents"]:
      i, j, c = item["latent"]
      frames = "".join(f"<img alt='frame {n}' src='{uri}'>"
                       for n, uri in enumerate(item["frames"]))
      parts.append(
          f"<figure class=latent data-latent='{i},{j},{c}' data-values='{values}'>"
          f"<div class=row><img class=field alt='receptive field' src='{item['field_png']}'>"
          f"<div class=frames>{frames}</div></div><figcaption>latent (i, j, c) = "
          f"({i}, {j}, {c}), strength {item['strength']:.3g}; value <span class=value>"
          f"</span> <input type=range min=0 max={len(item['frames']) - 1} step=1> "
          f"<button type=button>play</button></figcaption></figure>")
    parts.append("</div></section>")
  parts.append(f"<script>{_SCRIPT}</script></body></html>")
  return "".join(parts)


def write_html(flow, params, path, rng, title: str = "RG-Flow latents", **options) -> dict:
  """Write the explorer file to ``path`` (local or gs://); ``options`` as
  :func:`explorer_content`'s. Returns a summary: the latents chosen per level."""
  content = explorer_content(flow, params, rng, **options)
  storage.write_text_atomic(path, render_html(content, title))
  return {f"level{lv['level']}": [item["latent"] for item in lv["latents"]]
          for lv in content["levels"]}
