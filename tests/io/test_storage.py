"""Local files through rgflow_jax.io.storage: atomic, and created with the process umask."""

import os

import pytest

from rgflow_jax.io import storage


@pytest.fixture
def umask():
  """Set the umask for the test (the one it had is put back after)."""
  old = os.umask(0o022)
  yield os.umask
  os.umask(old)


def _mode(path) -> int:
  return os.stat(path).st_mode & 0o777


def test_atomic_writes_get_the_umask_mode_and_leave_no_temporary(tmp_path, umask):
  path = storage.write_json_atomic(tmp_path / "a" / "config.json", {"x": 1})
  assert _mode(path) == 0o644  # mkstemp alone would leave 0600
  umask(0o077)
  storage.write_text_atomic(path, "private")  # replaced, with the new umask's mode
  assert _mode(path) == 0o600 and path.read_text() == "private"
  umask(0o002)
  storage.save_npy(tmp_path / "a" / "x.npy", [1, 2])
  assert _mode(tmp_path / "a" / "x.npy") == 0o664
  assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "x.npy"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, umask, monkeypatch):
  path = storage.write_text_atomic(tmp_path / "f.txt", "old")

  def fail(*args):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", fail)
  with pytest.raises(OSError, match="No space"):
    storage.write_text_atomic(path, "new")
  assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
