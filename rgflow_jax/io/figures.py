"""Figures: image grids, training curves, receptive-field maps.

The figures are matplotlib ``Figure`` objects drawn without pyplot: importing this
module neither imports matplotlib (a command that draws nothing does not pay for it)
nor picks a backend for the process.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rgflow_jax.io import metrics, storage


def _figure(**kwargs):
  """A matplotlib Figure of its own (no pyplot state; saved through Agg)."""
  from matplotlib.figure import Figure  # noqa: PLC0415
  return Figure(**kwargs)


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 1) -> np.ndarray:
  """(N, H, W, C) uint8 -> one (rows*(H+pad)+pad, ...) uint8 mosaic on a grey ground."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  ncol = ncol or int(np.ceil(np.sqrt(n)))
  nrow = -(-n // ncol)
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 128, np.uint8)
  for i, img in enumerate(images):
    r, q = divmod(i, ncol)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + q * (w + pad):pad + q * (w + pad) + w] = img
  return grid


def titled(grid: np.ndarray, title: str | None, scale: int = 1,
           labels: GridLabels | None = None) -> Image.Image:
  """A uint8 mosaic as an RGB image enlarged ``scale`` times (nearest), with ``title``
  (one or more lines) on a white strip above it, and ``labels`` (column labels above,
  row labels left of the cells of an :func:`image_grid` mosaic) if given."""
  grid = np.repeat(grid, 3, axis=-1) if grid.shape[-1] == 1 else grid
  img = Image.fromarray(grid)
  img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  font = ImageFont.load_default(size=12)
  if labels is not None:
    img = _labelled(img, labels, scale, font)
  if not title:
    return img
  lines = _wrap(title, font, img.width - 8)
  line_h = 15
  out = Image.new("RGB", (img.width, img.height + line_h * len(lines) + 6), "white")
  draw = ImageDraw.Draw(out)
  for i, line in enumerate(lines):
    draw.text((4, 3 + i * line_h), line, fill="black", font=font)
  out.paste(img, (0, out.height - img.height))
  return out


class GridLabels:
  """Labels of an :func:`image_grid` mosaic of (h, w) cells with ``pad``: ``columns``
  drawn above each column, ``rows`` left of each row (either may be empty)."""

  def __init__(self, cell: tuple[int, int], columns=(), rows=(), pad: int = 1):
    self.cell, self.columns, self.rows, self.pad = cell, list(columns), list(rows), pad


def _labelled(img: Image.Image, labels: GridLabels, scale: int, font) -> Image.Image:
  (h, w), pad = labels.cell, labels.pad
  step_x, step_y = (w + pad) * scale, (h + pad) * scale
  left = int(max((font.getlength(t) for t in labels.rows), default=0)) + 8 \
      if labels.rows else 0
  col_lines = [_wrap(t, font, step_x - 2) for t in labels.columns]
  top = 15 * max((len(c) for c in col_lines), default=0) + 4 if labels.columns else 0
  out = Image.new("RGB", (img.width + left, img.height + top), "white")
  out.paste(img, (left, top))
  draw = ImageDraw.Draw(out)
  for q, lines in enumerate(col_lines):
    for k, line in enumerate(lines):
      x = left + pad * scale + q * step_x + (w * scale - font.getlength(line)) / 2
      draw.text((x, 2 + 15 * k), line, fill="black", font=font)
  for r, text in enumerate(labels.rows):
    y = top + pad * scale + r * step_y + (h * scale - 12) / 2
    draw.text((left - 4 - font.getlength(text), y), text, fill="black", font=font)
  return out


def _wrap(text: str, font, width: int) -> list[str]:
  """``text`` broken at spaces (and its own newlines) into lines that fit ``width``."""
  lines = []
  for paragraph in text.split("\n"):
    line = ""
    for word in paragraph.split(" "):
      trial = f"{line} {word}".strip()
      if line and font.getlength(trial) > width:
        lines.append(line)
        line = word
      else:
        line = trial
    lines.append(line)
  return lines


def save_grid(images: np.ndarray, path, ncol: int | None = None, scale: int = 4,
              title: str | None = None, columns=(), rows=()) -> np.ndarray:
  """Save a mosaic of uint8 images as a PNG, enlarged ``scale`` times (nearest), with a
  title strip above it and, if given, a label above each column and left of each row;
  returns the saved picture (H, W, 3) uint8."""
  img = grid_image(images, ncol, scale, title, columns, rows)
  storage.save_image(img, path)
  return np.asarray(img)


def grid_image(images: np.ndarray, ncol: int | None = None, scale: int = 4,
               title: str | None = None, columns=(), rows=()) -> Image.Image:
  """:func:`save_grid`'s picture, not saved."""
  images = np.asarray(images)
  labels = GridLabels(images.shape[1:3], columns, rows) if (columns or rows) else None
  return titled(image_grid(images, ncol), title, scale, labels)


def save_side_by_side(pictures: list, path, gap: int = 12) -> np.ndarray:
  """PIL pictures side by side (top-aligned, white ground) as one PNG."""
  width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
  out = Image.new("RGB", (width, max(p.height for p in pictures)), "white")
  x = 0
  for p in pictures:
    out.paste(p, (x, 0))
    x += p.width + gap
  storage.save_image(out, path)
  return np.asarray(out)


def save_gif(frames: list, path, ncol: int | None = None, scale: int = 4,
             duration_ms: int = 250, titles: list[str] | None = None):
  """An animated GIF: each frame a mosaic of uint8 images (N, H, W, C), with its title."""
  titles = titles or [None] * len(frames)
  imgs = [titled(image_grid(frame, ncol), t, scale) for frame, t in zip(frames, titles)]
  return storage.save_image(imgs[0], path, save_all=True,
                            append_images=imgs[1:] + imgs[-2:0:-1], duration=duration_ms,
                            loop=0)


def plot_bpd_curve(metrics_path, out_path, reference: dict | None = None):
  """Train and test bits/dim against wall-clock minutes (and steps on a top axis).

  ``reference``: an optional {label: ([minutes], [bpd])} curve drawn for comparison.
  """
  rows = metrics.read_metrics(metrics_path)
  fig = _figure(figsize=(6, 4))
  ax = fig.subplots()
  for key, style in (("train_bpd", "-"), ("test_bpd", "o-")):
    pts = [(r["minutes"], r[key]) for r in rows if key in r]
    if pts:
      ax.plot(*zip(*pts), style, label=key.replace("_", " "), ms=4)
  for label, (minutes, bpd) in (reference or {}).items():
    ax.plot(minutes, bpd, "s--", label=label, ms=4)
  ax.set_xlabel("training time (minutes)")
  ax.set_ylabel("bits per dimension")
  ax.set_title("bits/dim during training")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  storage.save_figure(fig, out_path, dpi=120)
  return out_path


def plot_maps(maps: np.ndarray, titles: list[str], out_path, ncol: int = 6,
              cmap: str = "viridis", suptitle: str | None = None):
  """A panel of 2-D maps (e.g. receptive fields), each on its own colour scale from 0
  to its maximum, shown by its colour bar, under ``suptitle``; returns the path."""
  n = len(maps)
  nrow = -(-n // ncol)
  fig = _figure(figsize=(2.25 * ncol, 2 * nrow + 0.75))  # exact in binary: whole pixels
  axes = fig.subplots(nrow, ncol, squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, m, t in zip(axes.flat, maps, titles):
    shown = ax.imshow(m, cmap=cmap, interpolation="nearest", vmin=0.0,
                      vmax=max(float(np.max(m)), 1e-12))
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    ax.set_title(t, fontsize=8)
  if suptitle:  # wrapped to the figure's width (about 9 characters an inch at 10 pt)
    fig.suptitle(textwrap.fill(suptitle, int(9 * 2.25 * ncol)), fontsize=10)
  fig.tight_layout()
  storage.save_figure(fig, out_path, dpi=100)
  return out_path


def plot_histograms(values: dict, out_path, xlabel: str, title: str | None = None):
  """One histogram per key (log-scaled x), e.g. receptive-field strengths per level."""
  from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: PLC0415

  fig = _figure(figsize=(6, 4))
  ax = fig.subplots()
  for label, v in values.items():
    v = np.asarray(v)
    v = v[v > 0]
    if len(v):
      bins = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, 30)
      ax.hist(v, bins=bins, histtype="step", label=str(label))
  ax.set_xscale("log")
  # Labels at 1, 2, 5 x 10^k only: matplotlib's minor labels over a narrow range overlap.
  ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
  ax.xaxis.set_minor_formatter(NullFormatter())
  ax.set_xlabel(xlabel)
  ax.set_ylabel("number of latents")
  if title:
    ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  storage.save_figure(fig, out_path, dpi=120)
  return out_path
