"""CelebA, CIFAR-10 and MNIST through tensorflow-datasets, read without TensorFlow.

Data are read with ``tfds.data_source`` from a folder prepared once in the
array_record format (``python -m rgflow_jax.data.prepare NAME``, which needs
TensorFlow and the official files in ``<data_dir>/downloads/manual/``). Nothing here
ever downloads.
"""

from __future__ import annotations

import dataclasses

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


TFDS_SETS = {
    "celeba": TfdsSet("celeb_a", 3, 148, False, ("train", "validation", "test"),
                      ("img_align_celeba.zip", "list_eval_partition.txt",
                       "list_attr_celeba.txt", "list_landmarks_align_celeba.txt",
                       "identity_CelebA.txt")),
    "cifar10": TfdsSet("cifar10", 3, None, False, ("train", "test"),
                       ("cifar-10-binary.tar.gz",)),
    "mnist": TfdsSet("mnist", 1, None, True, ("train", "test"),
                     ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
}


def missing_message(name: str, data_dir) -> str:
  spec = TFDS_SETS[name]
  return (f"{name} is not prepared under {data_dir}/{spec.tfds_name}: put "
          f"{', '.join(spec.manual_files)} into {data_dir}/downloads/manual/ and run "
          f"`pip install -r requirements-prepare.txt && python -m rgflow_jax.data.prepare "
          f"{name} --data_dir {data_dir}` (see docs/data.md)")


def unreadable_message(name: str, data_dir, error: Exception) -> str:
  """Why ``tfds.data_source`` failed, in one line: not prepared, remote, or damaged."""
  prepared = storage.as_path(data_dir) / TFDS_SETS[name].tfds_name
  try:
    exists = prepared.exists()
  except Exception:  # noqa: BLE001  (an unreachable store: report the reader's error)
    exists = True
  if not exists:
    return missing_message(name, data_dir)
  why = storage.error_line(error)
  if storage.is_remote(data_dir):
    return (f"cannot read {name} from {prepared} ({why}); the ArrayRecord files behind "
            "tfds.data_source are read from local disk: copy the prepared folder with "
            f"`gcloud storage cp -r {prepared} data/` (or `aws s3 cp --recursive` for s3://) "
            "and set --config.data.data_dir=data")
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
