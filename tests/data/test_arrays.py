"""Images from .npz files: checked, then served as a source."""

import numpy as np
import pytest

from helpers import data_section
from rgflow_jax import data


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
  src = data.make_source(data_section(name="npz", path=str(tmp_path / "good.npz")), "train")
  data.check_source_shape(src, 8, 3)
  with pytest.raises(data.DataError, match="model expects"):
    data.check_source_shape(src, 32, 3)
