"""The TFDS sets through tfds' mock data (nothing is downloaded): shapes and channels,
missing and damaged sets in one line with what to do."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from helpers import data_section
from rgflow_jax import data


@pytest.mark.parametrize("name,raw_shape,channels", [
    ("celeba", (218, 178, 3), 3), ("cifar10", (32, 32, 3), 3), ("mnist", (28, 28, 1), 1)])
def test_tfds_sets_through_mock_data(name, raw_shape, channels):
  spec = data.TFDS_SETS[name]
  with tfds.testing.mock_data(num_examples=12):
    raw = tfds.data_source(spec.tfds_name, split="train")
    source = data.make_source(data_section(name=name), "train")
    assert len(source) == 12
    assert source.image_shape == (32, 32, channels)
    batch = next(data.train_batches(source, 4, seed=0))
    assert batch.shape == (4, 32, 32, channels) and batch.dtype == np.uint8
    for i in range(3):
      original = np.asarray(raw[i]["image"])
      assert original.shape == raw_shape
      got = source[i]
      if name == "celeba":  # centre 148 x 148 crop, bicubic down to 32
        crop = original[35:183, 15:163]
        want = np.asarray(Image.fromarray(crop).resize((32, 32), Image.BICUBIC))
      elif name == "mnist":  # zero padding 2 on each side
        want = np.zeros((32, 32, 1), np.uint8)
        want[2:30, 2:30] = original
      else:
        want = original
      np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(data.TFDS_SETS))
def test_missing_tfds_set_fails_fast_with_instructions(name, tmp_path):
  start = time.perf_counter()
  with pytest.raises(data.DataError) as err:
    data.make_source(data_section(name=name, data_dir=str(tmp_path)), "test")
  assert time.perf_counter() - start < 1.0
  msg = str(err.value)
  assert "\n" not in msg
  assert "downloads/manual" in msg and "python -m rgflow_jax.data.prepare" in msg
  assert '"rgflow-jax[prepare]"' in msg and data.TFDS_SETS[name].source in msg
  for f in data.TFDS_SETS[name].manual_files:
    assert f in msg


def test_tfds_errors_tell_missing_from_damaged(tmp_path):
  from rgflow_jax.data import tfds_sources  # noqa: PLC0415
  error = ValueError("reader failed\nsecond line")
  assert tfds_sources.unreadable_message("cifar10", tmp_path, error) == \
      tfds_sources.missing_message("cifar10", tmp_path)
  (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
  message = tfds_sources.unreadable_message("cifar10", tmp_path, error)
  assert "ValueError: reader failed" in message and "prepare it again" in message
  assert "\n" not in message
