"""tfds sets (mocked), image folders, .npz files and the pipeline."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rgflow_jax import data
from rgflow_jax.configs import base


def _cfg(name, **location):
  """A data section (config.data) of set ``name``, its location as given."""
  c = base.base_config().data
  c.name = name
  c.location.update({"data_dir": "/nonexistent-data", **location})
  return c


@pytest.mark.parametrize("name,raw_shape,channels", [
    ("celeba", (218, 178, 3), 3), ("cifar10", (32, 32, 3), 3), ("mnist", (28, 28, 1), 1)])
def test_tfds_sets_through_mock_data(name, raw_shape, channels):
  spec = data.TFDS_SETS[name]
  with tfds.testing.mock_data(num_examples=12):
    raw = tfds.data_source(spec.tfds_name, split="train")
    source = data.make_source(_cfg(name=name), "train")
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
    data.make_source(_cfg(name=name, data_dir=str(tmp_path)), "test")
  assert time.perf_counter() - start < 1.0
  msg = str(err.value)
  assert "\n" not in msg
  assert "downloads/manual" in msg and "python -m rgflow_jax.data.prepare" in msg
  assert '"rgflow-jax[prepare]"' in msg and data.TFDS_SETS[name].source in msg
  for f in data.TFDS_SETS[name].manual_files:
    assert f in msg


@pytest.fixture
def image_folder(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "chairs"
  (folder / "sub").mkdir(parents=True)
  for i in range(12):
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
  Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L").save(folder / "gray.png")
  Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(
      folder / "sub" / "odd.jpg")
  (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
  good = (folder / "0.png").read_bytes()
  (folder / "truncated.png").write_bytes(good[: len(good) // 2])
  (folder / "notes.txt").write_text("not an image")
  (folder / "bomb.png").write_bytes(_png_with_header_size(good, 20_000, 20_000))
  return folder


def _png_with_header_size(png: bytes, width: int, height: int) -> bytes:
  """A PNG whose IHDR claims another size (CRC fixed): what a decompression bomb's
  header looks like, without its 400-megapixel body."""
  import struct  # noqa: PLC0415
  import zlib  # noqa: PLC0415
  ihdr = bytearray(png[12:29])  # b"IHDR" + 13 bytes
  ihdr[4:12] = struct.pack(">II", width, height)
  return png[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + png[33:]


def test_image_folder_skips_and_reports_bad_files(image_folder, caplog):
  sources = [data.ImageFolderSource(image_folder, 32, split=s, test_fraction=0.3,
                                    progress=False) for s in ("train", "test")]
  loaded = [p.name for s in sources for p in s.files]
  skipped = [p.name for s in sources for p, _ in s.skipped]
  assert sorted(skipped) == ["bomb.png", "corrupt.jpg", "truncated.png"]
  assert sorted(loaded) == sorted([f"{i}.png" for i in range(12)] + ["gray.png", "odd.jpg"])
  assert not set(sources[0].files) & set(sources[1].files)  # a real split
  assert len(sources[1]) > 0
  for s in sources:
    assert s.images.shape[1:] == (32, 32, 3) and s.images.dtype == np.uint8
  assert "skipped" in caplog.text and "corrupt.jpg" in caplog.text
  # The split is a pure function of the file names: the same again.
  again = data.ImageFolderSource(image_folder, 32, split="test", test_fraction=0.3,
                                 progress=False)
  assert again.files == sources[1].files
  np.testing.assert_array_equal(again.images, sources[1].images)


def test_image_folder_preprocessing_is_centre_crop_and_bicubic(image_folder):
  src = data.ImageFolderSource(image_folder, 16, split="train", test_fraction=0.0,
                               progress=False)
  i = [p.name for p in src.files].index("0.png")
  original = np.asarray(Image.open(image_folder / "0.png"))  # 64 x 48
  want = np.asarray(Image.fromarray(original[8:56]).resize((16, 16), Image.BICUBIC))
  np.testing.assert_array_equal(src[i], want)
  gray = data.ImageFolderSource(image_folder, 16, channels=1, test_fraction=0.0,
                                progress=False)
  assert gray.image_shape == (16, 16, 1)


def test_image_folder_errors(tmp_path):
  with pytest.raises(data.DataError, match="does not exist"):
    data.ImageFolderSource(tmp_path / "nope")
  with pytest.raises(data.DataError, match="no images"):
    data.ImageFolderSource(tmp_path)


def test_npz_files(tmp_path):
  good = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
  np.savez(tmp_path / "good.npz", images=good)
  np.testing.assert_array_equal(data.load_npz(tmp_path / "good.npz"), good)
  np.savez(tmp_path / "float.npz", images=good / 255.0)
  with pytest.raises(data.DataError, match="must be uint8"):
    data.load_npz(tmp_path / "float.npz")
  np.savez(tmp_path / "rank.npz", images=good[..., 0])
  with pytest.raises(data.DataError, match="rank 4"):
    data.load_npz(tmp_path / "rank.npz")
  np.savez(tmp_path / "two.npz", a=good, b=good)
  with pytest.raises(data.DataError, match="name the images array"):
    data.load_npz(tmp_path / "two.npz")
  (tmp_path / "broken.npz").write_bytes(b"nonsense")
  with pytest.raises(data.DataError, match="not a readable .npz"):
    data.load_npz(tmp_path / "broken.npz")
  with pytest.raises(data.DataError, match="no such file"):
    data.load_npz(tmp_path / "missing.npz")
  src = data.make_source(_cfg(name="npz", path=str(tmp_path / "good.npz")), "train")
  data.check_source_shape(src, 8, 3)
  with pytest.raises(data.DataError, match="model expects"):
    data.check_source_shape(src, 32, 3)


def _source(n=37):
  imgs = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
  imgs[:, :, 0] = 255  # a left column marks horizontal flips
  return data.ArraySource(imgs)


def test_restored_pipeline_continues_exactly():
  source = _source()
  full = data.train_batches(source, 5, seed=11, flip=True)
  uninterrupted = [next(full) for _ in range(20)]
  first = data.train_batches(source, 5, seed=11, flip=True)
  for _ in range(7):
    next(first)
  state = first.get_state()
  resumed = data.train_batches(source, 5, seed=11, flip=True)
  resumed.set_state(state)
  for want in uninterrupted[7:]:
    np.testing.assert_array_equal(next(resumed), want)


def test_epochs_cover_the_data_and_reshuffle():
  source = _source(20)
  it = data.train_batches(source, 5, seed=0)
  epochs = [np.concatenate([next(it)[:, 1, 1, 0] for _ in range(4)]) for _ in range(2)]
  for e in epochs:
    assert sorted(e.tolist()) == list(range(20))
  assert (epochs[0] != epochs[1]).any()
  flips = np.concatenate([next(data.train_batches(source, 20, seed=s, flip=True))[:, 0, 0, 0]
                          for s in range(5)])
  assert 0.2 < (flips != 255).mean() < 0.8  # about half are flipped (marker moved)


def test_the_global_batches_do_not_depend_on_the_process_count():
  """Process p's batches are rows p*b.. of one process's global batches, step after
  step and across epochs (40 images, global batches of 16), flips included."""
  source = _source(40)
  whole = data.train_batches(source, 16, seed=3, flip=True)
  parts = [data.train_batches(source, 4, seed=3, flip=True, process_index=p, process_count=4)
           for p in range(4)]
  for _ in range(6):
    np.testing.assert_array_equal(next(whole), np.concatenate([next(it) for it in parts]))


def test_eval_batches_cover_everything_once_in_equal_padded_shares():
  # One process: global batches of 6, the last padded.
  batches = list(data.eval_batches(_source(23), 6))
  assert [len(b) for b, _ in batches] == [6, 6, 6, 6]
  assert [float(w.sum()) for _, w in batches] == [6, 6, 6, 5]
  # Three processes: the same global batches, cut into rows of 2; the last one's
  # five images are on processes 0, 1 and 2 as 2, 2 and 1.
  shares = [list(data.eval_batches(_source(23), 6, None, p, 3)) for p in range(3)]
  for i, (images, weights) in enumerate(batches):
    np.testing.assert_array_equal(np.concatenate([s[i][0] for s in shares]), images)
    np.testing.assert_array_equal(np.concatenate([s[i][1] for s in shares]), weights)
  assert [float(s[-1][1].sum()) for s in shares] == [2, 2, 1]
  real = np.concatenate([b[w == 1] for b, w in batches])
  assert real[:, 1, 1, 0].tolist() == list(range(23))


def test_bad_data_config():
  with pytest.raises(data.DataError, match="must be one of"):
    data.make_source(_cfg(name="imagenet"), "train")
  with pytest.raises(data.DataError, match="fewer than one batch"):
    data.train_batches(_source(3), 8, seed=0)


def test_tfds_errors_tell_missing_from_damaged(tmp_path):
  from rgflow_jax.data import tfds_sources  # noqa: PLC0415
  error = ValueError("reader failed\nsecond line")
  assert tfds_sources.unreadable_message("cifar10", tmp_path, error) == \
      tfds_sources.missing_message("cifar10", tmp_path)
  (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
  message = tfds_sources.unreadable_message("cifar10", tmp_path, error)
  assert "ValueError: reader failed" in message and "prepare it again" in message
  assert "\n" not in message
