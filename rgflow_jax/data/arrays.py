"""uint8 image arrays: in-memory sources, .npz files, and the on-disk MSDS cache."""

from __future__ import annotations

import hashlib
import io

import numpy as np

from rgflow_jax.data import msds
from rgflow_jax.data.errors import DataError
from rgflow_jax.io import storage

MSDS_SPLITS = {"train": 0, "test": 1}


class ArraySource:
  """Random access over a uint8 (N, H, W, C) array (numpy or a memory map)."""

  def __init__(self, images: np.ndarray, name: str = "array"):
    self.images = check_images(images, name)
    self.name = name

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> np.ndarray:
    return np.asarray(self.images[index])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])


def check_images(images, name: str) -> np.ndarray:
  if not isinstance(images, np.ndarray):
    raise DataError(f"{name}: expected a numpy array of images, got {type(images).__name__}")
  if images.ndim != 4:
    raise DataError(f"{name}: images must have rank 4 (N, H, W, C), got shape "
                    f"{images.shape}; add a channel axis for grayscale (x[..., None])")
  if images.dtype != np.uint8:
    raise DataError(f"{name}: images must be uint8 pixels 0..255, got dtype "
                    f"{images.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8) "
                    "(multiply by 255 first if they are floats in [0, 1])")
  if images.shape[-1] not in (1, 3):
    raise DataError(f"{name}: images must have 1 or 3 channels (NHWC), got shape "
                    f"{images.shape}")
  if len(images) == 0:
    raise DataError(f"{name}: no images")
  return images


def load_npz(path, key: str | None = None) -> np.ndarray:
  """uint8 (N, H, W, C) images from an .npz (key 'images', or its only array)."""
  path = storage.as_path(path)
  if not path.is_file():
    raise DataError(f"{path}: no such file; give an .npz holding uint8 images (N, H, W, C)")
  try:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
      keys = list(npz.keys())
      if key is None:
        key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
      if key not in keys:
        raise DataError(f"{path}: has arrays {keys}; name the images array 'images' "
                        "or pass its key")
      images = npz[key]
  except DataError:
    raise
  except Exception as e:  # zipfile / pickle / format errors
    raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
  return check_images(images, str(path))


def _sha256(path) -> str:
  h = hashlib.sha256()
  with storage.as_path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 24), b""):
      h.update(block)
  return h.hexdigest()


def _msds_files(data_dir, variant: str, split: str, n: int, seed: int):
  folder = storage.as_path(data_dir) / variant
  stem = f"{split}-n{n}-seed{seed}"
  return folder, folder / f"{stem}-images.npy", folder / f"{stem}-labels.npy", \
      folder / f"{stem}.json"


def _read_msds_cache(images_path, labels_path, meta_path, n):
  try:
    meta = storage.read_json(meta_path)
    if (_sha256(images_path) != meta["images_sha256"]
        or _sha256(labels_path) != meta["labels_sha256"]):
      return None
    images = storage.load_npy(images_path)
    labels = storage.load_npy(labels_path)
  except (OSError, ValueError, KeyError, TypeError):
    return None
  if images.shape != (n, 32, 32, 3) or labels.shape != (n, 16, 6):
    return None
  return images, labels


def load_msds(variant: str, split: str, data_dir="data", n: int | None = None,
              seed: int = 0, progress: bool = True):
  """MSDS images (n, 32, 32, 3) uint8 and labels (n, 16, 6), generated once and cached.

  The cache is verified by checksum on every load and regenerated if it is missing or
  damaged. Train and test come from disjoint seed streams.
  """
  msds._check_variant(variant)
  if split not in MSDS_SPLITS:
    raise DataError(f"MSDS split must be one of {list(MSDS_SPLITS)}, got {split!r}")
  if n is None:
    n = 90_000 if split == "train" else 10_000
  folder, images_path, labels_path, meta_path = _msds_files(data_dir, variant, split, n, seed)
  cached = _read_msds_cache(images_path, labels_path, meta_path, n) \
      if meta_path.exists() else None
  if cached is not None:
    return cached
  try:
    folder.mkdir(parents=True, exist_ok=True)
    if meta_path.exists():
      meta_path.unlink()  # the meta file marks a complete cache: last in
    images, labels = msds.generate(variant, n, seed=seed * 2 + MSDS_SPLITS[split],
                                   progress=progress)
    storage.save_npy(images_path, images)
    storage.save_npy(labels_path, labels)
    meta = {"variant": variant, "split": split, "n": n, "seed": seed,
            "images_sha256": _sha256(images_path), "labels_sha256": _sha256(labels_path)}
    storage.write_json_atomic(meta_path, meta)
  except OSError as e:
    raise DataError(f"cannot write the {variant} cache to {folder} ({e}); set "
                    "config.data.location.data_dir to a writable folder") from None
  return images, labels
