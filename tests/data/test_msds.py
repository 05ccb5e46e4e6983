"""MSDS1 / MSDS2 generation and its on-disk cache."""

import json

import numpy as np
import pytest

from rgflow_jax import data
from rgflow_jax.data import arrays, msds


@pytest.fixture(scope="module")
def msds1():
  return msds.generate("msds1", 200, seed=5)


@pytest.fixture(scope="module")
def msds2():
  return msds.generate("msds2", 200, seed=5)


def test_deterministic_for_a_seed_and_different_across_seeds():
  a, la = msds.generate("msds1", 30, seed=1)
  b, lb = msds.generate("msds1", 30, seed=1)
  c, _ = msds.generate("msds1", 30, seed=2)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(la, lb)
  assert (a != c).any()
  d, _ = msds.generate("msds2", 30, seed=1)
  assert (a != d).any()


@pytest.mark.parametrize("variant", msds.VARIANTS)
def test_sixteen_ovals_on_the_grid_within_the_jitter(variant, msds1, msds2):
  images, labels = msds1 if variant == "msds1" else msds2
  assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (200, 16, 6)
  rows, cols = np.divmod(np.arange(16), 4)
  assert set(np.unique(labels[..., 0] - 8 * cols)) <= {-1, 0, 1}
  assert set(np.unique(labels[..., 1] - 8 * rows)) <= {-1, 0, 1}
  assert len(np.unique(labels[..., 0] - 8 * cols)) == 3  # the jitter really varies
  for n in range(0, 200, 7):
    for x, y, *_ in labels[n]:
      # Each oval covers its sprite's centre at any angle; its colour is never black
      # unless the label colour is black.
      x, y = int(x), int(y)
      centre = images[n, max(y + 3, 0):y + 5, max(x + 3, 0):x + 5]
      assert centre.max() > 0 or labels[n, :, 3:].max() == 0
  # Far from every oval (the image corners between cells) the background is black.
  assert (images[:, :, :, :].reshape(200, -1).min(axis=1) == 0).all()


def test_msds1_colours_share_a_base_and_angles_are_free(msds1):
  _, labels = msds1
  colours = labels[..., 3:]
  spread = colours.max(axis=1) - colours.min(axis=1)  # per image and channel
  assert spread.max() <= 64
  assert colours.min() >= 0 and colours.max() <= 255
  base_means = colours.mean(axis=1)
  assert base_means.std(axis=0).min() > 30  # the base colour varies across images
  angle_spread = labels[..., 2].max(axis=1) - labels[..., 2].min(axis=1)
  assert np.median(angle_spread) > 120
  assert labels[..., 2].min() >= 0 and labels[..., 2].max() < 180


def test_msds2_angles_share_a_base_and_colours_are_free(msds2):
  _, labels = msds2
  angles = labels[..., 2]
  assert (angles.max(axis=1) - angles.min(axis=1)).max() < 45
  colour_spread = labels[..., 3:].max(axis=1) - labels[..., 3:].min(axis=1)
  assert np.median(colour_spread) > 150


@pytest.mark.parametrize("variant", msds.VARIANTS)
def test_labels_match_the_pixels(variant, msds1, msds2):
  """The brightest pixel of each oval has the labelled colour.

  Bicubic rotation overshoots at the thin ellipse's edges, so the brightest pixel
  is the label colour scaled by a factor s in [1, 1.3] (PIL premultiplies alpha, so
  every channel scales alike), clipped at 255, and rounded: we check exactly that.
  """
  images, labels = msds1 if variant == "msds1" else msds2
  scales = np.linspace(1.0, 1.3, 301)
  worst = 0.0
  for n in range(60):
    for x, y, _, *colour in labels[n]:
      x, y = int(x), int(y)
      patch = images[n, max(y + 2, 0):y + 6, max(x + 2, 0):x + 6].reshape(-1, 3)
      brightest = patch[patch.astype(int).sum(axis=1).argmax()].astype(float)
      predicted = np.clip(scales[:, None] * np.asarray(colour)[None], 0, 255)
      worst = max(worst, np.abs(predicted - brightest).max(axis=1).min())
  assert worst <= 1.0


def test_cache_is_reused_and_regenerated_when_damaged(tmp_path):
  images, labels = arrays.load_msds("msds2", "test", tmp_path, n=50, seed=3, progress=False)
  again, _ = arrays.load_msds("msds2", "test", tmp_path, n=50, seed=3, progress=False)
  assert isinstance(again, np.memmap)  # read back from disk, not regenerated
  np.testing.assert_array_equal(again, images)
  train, _ = arrays.load_msds("msds2", "train", tmp_path, n=50, seed=3, progress=False)
  assert (train != images).any()  # train and test are different draws
  files = sorted((tmp_path / "msds2").glob("test-*-images.npy"))
  assert len(files) == 1
  raw = bytearray(files[0].read_bytes())
  raw[-100:] = bytes(100)  # corrupt the tail
  files[0].write_bytes(bytes(raw))
  fixed, _ = arrays.load_msds("msds2", "test", tmp_path, n=50, seed=3, progress=False)
  np.testing.assert_array_equal(fixed, images)
  files[0].write_bytes(b"junk")  # truncated to nothing useful
  fixed, _ = arrays.load_msds("msds2", "test", tmp_path, n=50, seed=3, progress=False)
  np.testing.assert_array_equal(fixed, images)


@pytest.mark.parametrize("meta", ["[]", "null", "{", ""])
def test_a_cache_with_a_meta_file_that_is_not_a_record_is_regenerated(tmp_path, meta):
  images, _ = arrays.load_msds("msds1", "test", tmp_path, n=20, seed=1, progress=False)
  (meta_path,) = (tmp_path / "msds1").glob("test-*.json")
  meta_path.write_text(meta)
  again, _ = arrays.load_msds("msds1", "test", tmp_path, n=20, seed=1, progress=False)
  np.testing.assert_array_equal(again, images)
  assert json.loads(meta_path.read_text())["n"] == 20  # rewritten whole


def test_an_unwritable_data_dir_is_a_one_line_error(tmp_path):
  not_a_folder = tmp_path / "file"
  not_a_folder.write_text("x")
  with pytest.raises(data.DataError, match="config.data.location.data_dir") as err:
    arrays.load_msds("msds1", "test", not_a_folder, n=5, progress=False)
  assert "\n" not in str(err.value) and str(not_a_folder) in str(err.value)


def test_bad_variant_and_split():
  with pytest.raises(ValueError, match="msds1"):
    msds.generate("msds3", 1)
  with pytest.raises(ValueError, match="split"):
    arrays.load_msds("msds1", "validation", "/nonexistent")
