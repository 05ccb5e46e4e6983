"""One writer per run folder: ``train.py`` holds ``<workdir>/.train.lock`` while it runs.

A local workdir is locked with ``fcntl.flock``: the kernel releases it when the holder
exits, however it exits (SIGKILL included), so a lock is never stale. The file names the
holder (process id, host, start time) for the error a second trainer gets. Object stores
(``gs://``, ``s3://``) have no such lock: a remote workdir is not locked, and the log
says so once; start one trainer per remote workdir.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from rgflow_jax import storage

log = logging.getLogger(__name__)
LOCK_NAME = ".train.lock"


class RunLocked(RuntimeError):
  """Another process is training in this workdir; the message names it."""


class RunLock:
  """``with RunLock(workdir):`` around everything a trainer writes."""

  def __init__(self, workdir):
    self.workdir = storage.as_path(workdir)
    self._file = None

  def __enter__(self) -> RunLock:
    if storage.is_remote(self.workdir):
      log.warning("%s is on an object store, which cannot be locked: run one trainer "
                  "per workdir", self.workdir)
      return self
    import fcntl  # noqa: PLC0415  (POSIX only, as the lock is)
    path = os.fspath(self.workdir / LOCK_NAME)
    f = open(path, "a+")  # noqa: SIM115  (held open for as long as the lock)
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise RunLocked(f"{self.workdir} is being trained by {holder}: wait for it to "
                      "finish, stop it, or train in another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      import fcntl  # noqa: PLC0415
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
