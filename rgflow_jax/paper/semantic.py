"""MSDS semantic scores: do generated images keep the data set's global feature?

FID says little on synthetic sets (the paper says so). Here each of the 16 ovals of
an MSDS image is measured directly:

* where: the cell's 8 x 8 window, moved by the jitter (-1, 0 or 1 per axis) that puts
  the brightness centroid closest to the sprite centre;
* orientation: the major axis of the brightness-weighted second moments of that
  window (degrees in [0, 180), counter-clockwise, as the generator's angle);
* colour: the window's summed RGB divided by the oval's area at that angle. Bicubic
  rotation spreads an oval's colour over soft edges and overshoots it inside, but
  keeps its total: the area table is measured once from the generator's own sprite.

Per image, the spread of the 16 colours (mean over channels of their standard
deviation) and of the 16 orientations (circular standard deviation of axes, degrees)
is then compared with the same scores on real images: MSDS1 keeps colours within a
narrow band, MSDS2 orientations.
"""

from __future__ import annotations

import functools

import numpy as np

from rgflow_jax.data import msds

_REF_GREY = 128  # below 255 so the reference sprite's overshoot is not clipped


@functools.lru_cache(maxsize=1)
def _area_table() -> np.ndarray:
  """Oval area (in full-colour pixel units) for every whole degree 0..179."""
  areas = []
  for angle in range(180):
    s = np.asarray(msds.draw_oval((_REF_GREY,) * 3, angle), np.float64)
    areas.append((s[..., :3].mean(-1) * s[..., 3] / 255.0).sum() / _REF_GREY)
  return np.asarray(areas)


def _check(images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[None]
  if images.shape[1:] != (msds.IMAGE_SIZE, msds.IMAGE_SIZE, 3):
    raise ValueError(f"MSDS scores need (n, 32, 32, 3) images, got {images.shape}")
  if images.dtype != np.uint8:
    raise ValueError(f"MSDS scores need uint8 images (0..255), got {images.dtype}")
  return images.astype(np.float64)


def _window(img, bright, top, left):
  ys = slice(max(top, 0), min(top + msds.SPRITE, msds.IMAGE_SIZE))
  xs = slice(max(left, 0), min(left + msds.SPRITE, msds.IMAGE_SIZE))
  yy, xx = np.mgrid[ys, xs]
  return bright[ys, xs], yy, xx, img[ys, xs]


def _centroid(w, yy, xx):
  total = w.sum()
  return (w * yy).sum() / total, (w * xx).sum() / total


def oval_properties(images) -> np.ndarray:
  """(n, 16, 4): angle (degrees, [0, 180)), r, g, b of each oval, cells row-major.

  A cell with no light in it gives NaN.
  """
  images = _check(images)
  areas = _area_table()
  out = np.full((len(images), msds.GRID * msds.GRID, 4), np.nan)
  centre = (msds.SPRITE - 1) / 2.0
  for n, img in enumerate(images):
    bright = img.max(axis=-1)
    for cell in range(msds.GRID * msds.GRID):
      row, col = divmod(cell, msds.GRID)
      top, left = msds.CELL * row, msds.CELL * col
      w, yy, xx, _ = _window(img, bright, top, left)
      if w.sum() <= 0:
        continue
      cy, cx = _centroid(w, yy, xx)
      top += int(np.clip(np.rint(cy - top - centre), -1, 1))
      left += int(np.clip(np.rint(cx - left - centre), -1, 1))
      w, yy, xx, pix = _window(img, bright, top, left)
      cy, cx = _centroid(w, yy, xx)
      total = w.sum()
      m_yy = (w * (yy - cy) ** 2).sum() / total
      m_xx = (w * (xx - cx) ** 2).sum() / total
      m_xy = (w * (xx - cx) * (yy - cy)).sum() / total
      # Rows grow downwards, angles counter-clockwise: hence the minus sign.
      angle = np.degrees(0.5 * np.arctan2(-2.0 * m_xy, m_xx - m_yy)) % 180.0
      colour = pix.reshape(-1, 3).sum(axis=0) / areas[int(np.rint(angle)) % 180]
      out[n, cell] = (angle, *colour)
  return out


def axial_spread(angles_deg, axis=-1) -> np.ndarray:
  """Circular standard deviation (degrees) of axes: angles taken mod 180."""
  doubled = np.radians(2.0 * np.asarray(angles_deg))
  r = np.abs(np.nanmean(np.exp(1j * doubled), axis=axis))
  return np.degrees(np.sqrt(-2.0 * np.log(np.clip(r, 1e-12, 1.0)))) / 2.0


def image_scores(images) -> dict[str, np.ndarray]:
  """Per image: ``colour_spread`` (0..255 units) and ``angle_spread`` (degrees)."""
  props = oval_properties(images)
  return {"colour_spread": np.nanmean(np.nanstd(props[..., 1:], axis=1), axis=-1),
          "angle_spread": axial_spread(props[..., 0], axis=1)}


def compare(generated, real, band_quantile: float = 0.95) -> dict:
  """Scores of generated images against real ones.

  For each score: its median on both sets, the real set's band (its
  ``band_quantile`` quantile) and the share of generated images inside that band.
  """
  gen, ref = image_scores(generated), image_scores(real)
  out = {}
  for key in gen:
    band = float(np.nanquantile(ref[key], band_quantile))
    g = gen[key][np.isfinite(gen[key])]
    out[key] = {"median_generated": float(np.median(g)) if len(g) else float("nan"),
                "median_real": float(np.nanmedian(ref[key])),
                "band_real": band,
                "share_in_band": float(np.mean(g <= band)) if len(g) else 0.0,
                "images": int(len(g))}
  return out
