"""CelebA, CIFAR-10 and MNIST through tensorflow-datasets, read without TensorFlow.

Data are read with ``tfds.data_source`` from a folder prepared once in the
array_record format (``python -m rgflow_jax.data.prepare NAME``, which needs
TensorFlow and the official files in ``<data_dir>/downloads/manual/``). Nothing here
ever downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np

from rgflow_jax.data.errors import DataError
from rgflow_jax.data.images import center_crop_resize, pad_to
from rgflow_jax.io import storage


@dataclasses.dataclass(frozen=True)
class TfdsSet:
  tfds_name: str
  channels: int
  crop: int | None  # centre crop before resizing; None: the image as it is
  pad: bool  # zero-pad up to the image size (MNIST 28 -> 32)
  splits: tuple[str, ...]
  manual_files: tuple[str, ...]
  source: str  # where the official files come from


TFDS_SETS = {
    "celeba": TfdsSet("celeb_a", 3, 148, False, ("train", "validation", "test"),
                      ("img_align_celeba.zip", "list_eval_partition.txt",
                       "list_attr_celeba.txt", "list_landmarks_align_celeba.txt",
                       "identity_CelebA.txt"),
                      "the CelebA site, mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
                      "(Align&Cropped Images and the Anno and Eval files)"),
    "cifar10": TfdsSet("cifar10", 3, None, False, ("train", "test"),
                       ("cifar-10-binary.tar.gz",),
                       "www.cs.toronto.edu/~kriz/cifar.html (the binary version)"),
    "mnist": TfdsSet("mnist", 1, None, True, ("train", "test"),
                     ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
                     "the MNIST files as tensorflow-datasets names them (its mnist page)"),
}


def missing_message(name: str, data_dir) -> str:
  spec = TFDS_SETS[name]
  return (f"{name} is not prepared under {data_dir}/{spec.tfds_name}: download "
          f"{', '.join(spec.manual_files)} from {spec.source} into "
          f"{data_dir}/downloads/manual/, then run `pip install \"rgflow-jax[prepare]\"` (in "
          f"a clone: pip install -r requirements-prepare.txt) and `python -m "
          f"rgflow_jax.data.prepare {name} --data_dir {data_dir}` once (docs/data.md; many "
          "hosts: docs/many-hosts.md)")


@contextlib.contextmanager
def _quiet_tfds():
  """tfds's warnings (through absl's logger) off for the duration."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _prepared(data_dir, spec: TfdsSet) -> bool:
  """Whether ``data_dir`` holds a prepared folder of the set (an unreachable store:
  True, and the reader's own error says why)."""
  try:
    return (storage.as_path(data_dir) / spec.tfds_name).exists()
  except Exception:  # noqa: BLE001
    return True


def unreadable_message(name: str, data_dir, error: Exception) -> str:
  """Why ``tfds.data_source`` failed, in one line: not prepared, remote, or damaged."""
  prepared = storage.as_path(data_dir) / TFDS_SETS[name].tfds_name
  if not _prepared(data_dir, TFDS_SETS[name]):
    return missing_message(name, data_dir)
  why = storage.error_line(error)
  if storage.is_remote(data_dir):
    return (f"cannot read {name} from {prepared} ({why}); the ArrayRecord files behind "
            "tfds.data_source are read from local disk: copy the prepared folder to each "
            f"host with `python -m rgflow_jax.data.prepare {name} --copy_from {data_dir} "
            "--data_dir data` and set --config.data.location.data_dir=data")
  return (f"cannot read {name} from {prepared} ({why}); the prepared folder may be "
          "incomplete: prepare it again (python -m rgflow_jax.data.prepare "
          f"{name} --data_dir {data_dir})")


class TfdsSource:
  """Random access over a prepared tfds set, preprocessed to (size, size, C) uint8."""

  def __init__(self, name: str, split: str, data_dir="data", image_size: int = 32):
    if name not in TFDS_SETS:
      raise DataError(f"unknown tfds set {name!r}; choose one of {list(TFDS_SETS)}")
    spec = TFDS_SETS[name]
    if split not in spec.splits:
      raise DataError(f"{name} has splits {list(spec.splits)}, got {split!r}")
    import tensorflow_datasets as tfds  # imported here: slow, and only needed here
    try:
      with _quiet_tfds():  # its warning of a missing folder: ours below says what to do
        self._ds = tfds.data_source(spec.tfds_name, split=split, data_dir=str(data_dir),
                                    download=False)
      if len(self._ds):
        self._ds[0]  # the reader opens its files lazily: fail here, not mid-training
    except Exception as e:  # noqa: BLE001  (tfds and array_record raise many types)
      raise DataError(unreadable_message(name, data_dir, e)) from None
    self.name, self.spec, self.image_size = name, spec, image_size

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> np.ndarray:
    image = np.asarray(self._ds[int(index)]["image"], dtype=np.uint8)
    if self.spec.pad:
      return pad_to(image, self.image_size)
    if self.spec.crop is not None or image.shape[0] != self.image_size:
      return center_crop_resize(image, self.image_size, self.spec.crop)
    return image

  @property
  def image_shape(self):
    return (self.image_size, self.image_size, self.spec.channels)
