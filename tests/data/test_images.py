"""An image folder as a data set: bad files skipped and reported, centre crop and bicubic
resize, one-line errors."""

import numpy as np
import pytest
from PIL import Image

from rgflow_jax import data


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
