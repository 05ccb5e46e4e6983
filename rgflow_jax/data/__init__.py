"""Data sets and the input pipeline (see pipeline.py)."""

from rgflow_jax.data.arrays import ArraySource, load_msds, load_npz
from rgflow_jax.data.errors import DataError
from rgflow_jax.data.images import ImageFolderSource
from rgflow_jax.data.pipeline import (DATASETS, check_source_shape, eval_batches,
                                      make_source, train_batches)
from rgflow_jax.data.tfds_sources import TFDS_SETS, TfdsSource

__all__ = ["ArraySource", "DATASETS", "DataError", "ImageFolderSource", "TFDS_SETS",
           "TfdsSource", "check_source_shape", "eval_batches", "load_msds", "load_npz",
           "make_source", "train_batches"]
