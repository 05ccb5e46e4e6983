"""MSDS1 and MSDS2: the paper's synthetic multi-scale data sets (App. B), made locally.

Each image is 32 x 32 RGB on black with 16 ovals on a 4 x 4 grid of 8 x 8 cells. An
oval is an 8 x 8 transparent RGBA sprite with a filled ellipse in the box (1, 3)-(7, 5),
rotated about the sprite centre by its angle (degrees, bicubic), pasted with its alpha
as mask at (8 i + d_i, 8 j + d_j), i the column, j the row, d uniform in {-1, 0, 1}.

* MSDS1 (colour global, orientation local): a base colour per image, each channel
  32 + U{0..191}; each oval's colour = base + U{-32..32} per channel; angles U[0, 180).
* MSDS2 (orientation global, colour local): a base angle per image U[0, 180); each
  oval's angle = base + U[0, 45); each oval's colour U{0..255} per channel.

Labels per oval: (x, y, angle, r, g, b) with (x, y) the paste position of its sprite.
Images are generated in chunks, each seeded from (seed, chunk index) through
``numpy.random.SeedSequence``, so the result depends on the seed alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from rgflow_jax.io.progress import bar as progress_bar

IMAGE_SIZE = 32
GRID = 4
CELL = 8
SPRITE = 8
ELLIPSE_BOX = ((1, 3), (7, 5))
VARIANTS = ("msds1", "msds2")
LABEL_FIELDS = ("x", "y", "angle", "r", "g", "b")
CHUNK = 1000


def _check_variant(variant: str) -> str:
  if variant not in VARIANTS:
    raise ValueError(f"MSDS variant must be one of {VARIANTS}, got {variant!r}")
  return variant


def draw_oval(color, angle: float) -> Image.Image:
  """The 8 x 8 RGBA sprite of one oval of ``color`` (r, g, b) rotated by ``angle``."""
  sprite = Image.new("RGBA", (SPRITE, SPRITE), (0, 0, 0, 0))
  ImageDraw.Draw(sprite).ellipse(ELLIPSE_BOX, fill=tuple(int(c) for c in color) + (255,))
  return sprite.rotate(float(angle), resample=Image.BICUBIC)


def sample_labels(variant: str, rng: np.random.Generator) -> np.ndarray:
  """(16, 6) float labels (x, y, angle, r, g, b) of one image, cells in row-major order."""
  _check_variant(variant)
  n = GRID * GRID
  jitter = rng.integers(-1, 2, size=(n, 2))  # {-1, 0, 1}, both ends included
  if variant == "msds1":
    base = 32 + rng.integers(0, 192, size=3)
    colors = base + rng.integers(-32, 33, size=(n, 3))
    angles = rng.uniform(0.0, 180.0, size=n)
  else:
    base_angle = rng.uniform(0.0, 180.0)
    angles = base_angle + rng.uniform(0.0, 45.0, size=n)
    colors = rng.integers(0, 256, size=(n, 3))
  rows, cols = np.divmod(np.arange(n), GRID)
  x = CELL * cols + jitter[:, 0]
  y = CELL * rows + jitter[:, 1]
  return np.column_stack([x, y, angles, colors]).astype(np.float64)


def render(labels: np.ndarray) -> np.ndarray:
  """(32, 32, 3) uint8 image from (16, 6) labels."""
  canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
  for x, y, angle, r, g, b in labels:
    sprite = draw_oval((r, g, b), angle)
    canvas.paste(sprite, (int(x), int(y)), mask=sprite)
  return np.asarray(canvas, dtype=np.uint8)


def generate_chunk(variant: str, n: int, seed_seq: np.random.SeedSequence):
  rng = np.random.default_rng(seed_seq)
  labels = np.stack([sample_labels(variant, rng) for _ in range(n)]).astype(np.float32)
  images = np.stack([render(l) for l in labels]) if n else np.zeros((0, 32, 32, 3), np.uint8)
  return images, labels


def generate(variant: str, n: int, seed: int = 0, progress: bool = False):
  """``n`` images (n, 32, 32, 3) uint8 and labels (n, 16, 6) float32, from ``seed``."""
  _check_variant(variant)
  if n < 0:
    raise ValueError(f"number of images must be >= 0, got {n}")
  n_chunks = -(-n // CHUNK)
  seqs = np.random.SeedSequence([seed, VARIANTS.index(variant)]).spawn(n_chunks)
  images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  labels = np.zeros((n, GRID * GRID, len(LABEL_FIELDS)), np.float32)
  with progress_bar(None, progress, total=n, desc=f"generating {variant}", unit="img") as bar:
    for c in range(n_chunks):
      lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
      images[lo:hi], labels[lo:hi] = generate_chunk(variant, hi - lo, seqs[c])
      bar.update(hi - lo)
  return images, labels
