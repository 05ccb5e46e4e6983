"""Image preprocessing (centre crop, bicubic resize, pad) and image-folder sources."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
from PIL import Image

from rgflow_jax.data.errors import DataError
from rgflow_jax.io import storage
from rgflow_jax.io.progress import bar as progress_bar

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
log = logging.getLogger(__name__)


def center_crop_resize(image: np.ndarray | Image.Image, size: int,
                       crop: int | None = None) -> np.ndarray:
  """Centre crop to ``crop`` x ``crop`` (default: the largest square), bicubic resize.

  Returns uint8 (size, size, C) with C the input's channel count.
  """
  if not isinstance(image, Image.Image):
    arr = np.asarray(image)
    image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
  w, h = image.size
  side = min(w, h) if crop is None else crop
  if side > min(w, h):
    raise DataError(f"crop {side} is larger than the image ({w} x {h})")
  left, top = (w - side) // 2, (h - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != size:
    image = image.resize((size, size), Image.BICUBIC)
  out = np.asarray(image, dtype=np.uint8)
  return out[..., None] if out.ndim == 2 else out


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
  """Zero-pad an (H, W, C) image symmetrically to (size, size, C)."""
  h, w = image.shape[:2]
  if h > size or w > size:
    raise DataError(f"cannot pad a {h} x {w} image to {size} x {size}")
  top, left = (size - h) // 2, (size - w) // 2
  return np.pad(image, ((top, size - h - top), (left, size - w - left), (0, 0)))


def in_test_split(name: str, test_fraction: float, seed: int) -> bool:
  """Deterministic split by a hash of the file's relative path (stable as files come and go)."""
  digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2.0**64 < test_fraction


class ImageFolderSource:
  """All images under a folder, centre-cropped, resized, loaded into memory.

  Unreadable files are skipped, listed in ``self.skipped`` as (path, reason), and
  reported in one log line; grayscale and colour files are converted to ``channels``.
  """

  def __init__(self, folder, image_size: int = 32, channels: int = 3,
               crop: int | None = None, split: str = "train",
               test_fraction: float = 0.1, seed: int = 0, progress: bool = True):
    folder = storage.as_path(folder)
    if not folder.is_dir():
      raise DataError(f"image folder {folder} does not exist; set config.data.location.path "
                      "to a folder of images (searched recursively)")
    if split not in ("train", "test"):
      raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 <= test_fraction < 1.0:
      raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if channels not in (1, 3):
      raise DataError(f"channels must be 1 or 3, got {channels}")
    files = [p for p in storage.files_under(folder) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
      raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    want_test = split == "test"
    files = [p for p in files
             if in_test_split(p.relative_to(folder).as_posix(), test_fraction, seed) == want_test]
    mode = "RGB" if channels == 3 else "L"
    images, self.skipped, self.files = [], [], []
    for path in progress_bar(files, progress, desc=f"loading {folder.name} ({split})",
                             unit="img"):
      try:
        with path.open("rb") as f, Image.open(f) as img:
          img.load()
          images.append(center_crop_resize(img.convert(mode), image_size, crop))
        self.files.append(path)
      except (OSError, ValueError, DataError, Image.DecompressionBombError) as e:
        self.skipped.append((path, f"{type(e).__name__}: {e}"))
    if self.skipped:
      log.warning("skipped %d of %d files under %s: %s", len(self.skipped), len(files),
                  folder, "; ".join(f"{p.name} ({r})" for p, r in self.skipped[:5]))
    if not images:
      raise DataError(f"no readable images in the {split} split of {folder} "
                      f"({len(self.skipped)} unreadable)")
    self.images = np.stack(images)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> np.ndarray:
    return self.images[index]

  @property
  def image_shape(self):
    return tuple(self.images.shape[1:])
