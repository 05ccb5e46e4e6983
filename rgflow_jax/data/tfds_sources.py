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
          f"{name} --data_dir {data_dir}` (see README, 'Data sets')")


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
    except Exception:  # tfds raises several types for "not there"; all mean the same
      raise DataError(missing_message(name, data_dir)) from None
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
