"""One input pipeline for every data set: sources by name, then grain batches.

Training batches are shuffled afresh each epoch from a seed, repeat forever, get their
augmentation on the fly (deterministic per element), and stay uint8 until the model
dequantises them. The iterator's position is a small dict (``get_state`` /
``set_state``) saved with each checkpoint, so a resumed run neither replays nor skips
data. For multi-host runs each process reads its own shard of the records.
"""

from __future__ import annotations

import grain
import numpy as np

from rgflow_jax.data import arrays, images, tfds_sources
from rgflow_jax.data.errors import DataError

DATASETS = ("msds1", "msds2", "celeba", "cifar10", "mnist", "folder", "npz")


def make_source(cfg, split: str, image_size: int = 32, channels: int = 3,
                progress: bool = True):
  """The random-access source of ``split`` ('train' or 'test') named by ``cfg``, a data
  section (``config.data``), for a model of ``image_size`` and ``channels``.

  Read: name, location.data_dir; msds: n_train, n_test, seed; folder: location.path,
  crop, test_fraction, seed; npz: location.path (train) and location.test_path.
  """
  name, where = cfg.name, cfg.location
  if name not in DATASETS:
    raise DataError(f"config.data.name must be one of {DATASETS}, got {name!r}")
  if split not in ("train", "test"):
    raise DataError(f"split must be 'train' or 'test', got {split!r}")
  if name in ("msds1", "msds2"):
    n = cfg.n_train if split == "train" else cfg.n_test
    imgs, _ = arrays.load_msds(name, split, where.data_dir, n, cfg.seed, progress)
    return arrays.ArraySource(imgs, name)
  if name in tfds_sources.TFDS_SETS:
    return tfds_sources.TfdsSource(name, split, where.data_dir, image_size)
  if name == "folder":
    if not where.path:
      raise DataError("config.data.location.path must name an image folder for "
                      "name='folder'")
    return images.ImageFolderSource(where.path, image_size, channels, cfg.crop or None,
                                    split, cfg.test_fraction, cfg.seed, progress)
  path = where.path if split == "train" else where.test_path
  if not path:
    raise DataError(f"config.data.location.{'path' if split == 'train' else 'test_path'} "
                    "must name an .npz of uint8 images for name='npz'")
  return arrays.ArraySource(arrays.load_npz(path), str(path))


def check_source_shape(source, image_size: int, channels: int):
  shape = tuple(source.image_shape)
  if shape != (image_size, image_size, channels):
    raise DataError(f"data has images of shape {shape} but the model expects "
                    f"({image_size}, {image_size}, {channels}); set config.model."
                    "image_size / channels to match, or resize the data")


def _flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  return image[:, ::-1] if rng.random() < 0.5 else image


def train_batches(source, batch_size: int, seed: int, flip: bool = False,
                  process_index: int = 0, process_count: int = 1,
                  num_threads: int = 2):
  """An endless, restorable iterator of uint8 (batch_size, H, W, C) training batches.

  ``batch_size`` is this process's share of the global batch. The global batches are
  the same for any number of processes (one shuffled order, cut into global batches;
  process p reads rows p*batch_size.. of each), so the iterator's position, the same
  on every process, restores every process exactly.
  """
  if batch_size < 1:
    raise DataError(f"batch size must be >= 1, got {batch_size}")
  ds = grain.MapDataset.source(source)
  if len(ds) < batch_size * process_count:
    raise DataError(f"the training set has {len(ds)} images, fewer than one batch of "
                    f"{batch_size * process_count}; lower config.train.batch_size")
  ds = ds.shuffle(seed=seed).repeat(None)
  if flip:
    ds = ds.random_map(_flip, seed=seed + 1)
  # Runs of batch_size images; global batch g is runs g*P .. g*P + P-1, and this
  # process's part of it is run g*P + p.
  ds = ds.batch(batch_size, drop_remainder=True)[process_index::process_count]
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)
  return iter(ds.to_iter_dataset(options))


def eval_batches(source, batch_size: int, max_images: int | None = None,
                 process_index: int = 0, process_count: int = 1):
  """One ordered pass over (the first ``max_images`` of) a source, in global batches of
  ``batch_size`` images (a multiple of the devices and processes), as this process's
  (images, weights) rows of each: weight 1 for an image, 0 for the padding that fills
  the last global batch. The global batches, padding included, are the same for any
  number of processes, and so is the dequantisation noise each image meets."""
  ds = grain.MapDataset.source(source)
  if max_images is not None:
    ds = ds[:max_images]
  n, local = len(ds), batch_size // process_count
  if n == 0:
    return
  blank = np.zeros_like(np.asarray(ds[0]))
  for start in range(0, n, batch_size):
    first = start + process_index * local
    rows = [np.asarray(ds[i]) for i in range(first, min(first + local, n))]
    weights = np.zeros(local, np.float32)
    weights[:len(rows)] = 1.0
    yield np.stack(rows + [blank] * (local - len(rows))), weights
