"""One trainer per local run folder: a second one is refused in one line naming the
holder, and the folder is free again once the holder leaves. (The lease on an object
store: tests/e2e/test_remote_storage.py; a second train.py: tests/e2e/test_train.py.)"""

import os

import pytest

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import runlock


def test_a_second_holder_is_refused_naming_the_first_then_the_folder_is_free(tmp_path):
  with runlock.RunLock(tmp_path) as held:
    assert not held.lost
    lock_file = tmp_path / runlock.LOCK_NAME
    assert lock_file.read_text().startswith(f"pid {os.getpid()} on ")
    with pytest.raises(runlock.RunLocked, match=rf"{tmp_path} is being trained by pid "
                       rf"{os.getpid()} on .*: wait for it to finish") as err:
      runlock.RunLock(tmp_path).__enter__()
    assert isinstance(err.value, RGFlowError) and "\n" not in str(err.value)
  with runlock.RunLock(tmp_path):  # released on exit: taken again at once
    pass


def test_a_lock_file_left_by_a_dead_holder_is_no_lock(tmp_path):
  (tmp_path / runlock.LOCK_NAME).write_text("pid 1 on elsewhere since 2020-01-01 00:00:00\n")
  with runlock.RunLock(tmp_path):  # flock: the kernel let go when its holder ended
    assert (tmp_path / runlock.LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")
