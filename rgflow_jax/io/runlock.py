"""One writer per run folder: ``train.py`` holds ``<workdir>/.train.lock`` while it runs.

A local workdir is locked with ``fcntl.flock``: the kernel releases it when the holder
exits, however it exits (SIGKILL included), so a local lock is never stale.

An object store (``gs://``, ``s3://``) has no such lock, so there the lock is a lease:
an object created only if absent (a conditional write, the store's compare-and-swap,
through tensorstore), renewed by its holder every ``lease_s / 4`` seconds and deleted
when it exits. A holder that dies without deleting it (SIGKILL, a preempted VM) leaves a
lease that another trainer takes over once it is ``lease_s`` old, or at once when the
holder was a process on the same host that no longer exists.

Either file names the holder (process id, host, start time) for the one-line error a
second trainer gets.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import storage

log = logging.getLogger(__name__)
LOCK_NAME = ".train.lock"
DEFAULT_LEASE_S = 300.0


class RunLocked(RGFlowError, RuntimeError):
  """Another process is training in this workdir; the message names it."""


def _holder() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _describe(holder: dict) -> str:
  return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _process_gone(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return True
  except (PermissionError, TypeError, ValueError):
    return False
  return False


class RunLock:
  """``with RunLock(workdir):`` around everything a trainer writes."""

  def __init__(self, workdir, lease_s: float = DEFAULT_LEASE_S):
    self.workdir = storage.as_path(workdir)
    self.lease_s = float(lease_s)
    self._file = None  # local: the open, flocked file
    self._kv = self._generation = self._renewer = None  # remote: the lease
    self._stop, self._lost = threading.Event(), threading.Event()

  @property
  def lost(self) -> bool:
    """Whether another trainer took this lease over (this holder was cut off from the
    store for longer than the lease): the run must stop, so that one writer remains."""
    return self._lost.is_set()

  def __enter__(self) -> RunLock:
    if storage.is_remote(self.workdir):
      self._take_lease()
    else:
      self._flock()
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      import fcntl  # noqa: PLC0415
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
    if self._kv is not None:
      self._stop.set()
      self._renewer.join()
      try:  # only our own lease: if_equal our generation
        self._kv.write(LOCK_NAME, None, if_equal=self._generation).result()
      except Exception as e:  # noqa: BLE001  (the store is unreachable: it expires)
        log.warning("could not remove the lease %s: %s", self._url, storage.error_line(e))
      self._kv = None

  def _locked(self, holder: str, extra: str = ""):
    return RunLocked(f"{self.workdir} is being trained by {holder}{extra}: wait for it "
                     "to finish, stop it, or train in another --workdir")

  # ------------------------------------------------------------------- local
  def _flock(self):
    import fcntl  # noqa: PLC0415  (POSIX only, as the lock is)
    path = os.fspath(self.workdir / LOCK_NAME)
    f = open(path, "a+")  # noqa: SIM115  (held open for as long as the lock)
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise self._locked(holder) from None
    f.seek(0)
    f.truncate()
    f.write(_describe(_holder()) + "\n")
    f.flush()
    self._file = f

  # ------------------------------------------------------------------ remote
  @property
  def _url(self) -> str:
    return f"{os.fspath(self.workdir).rstrip('/')}/{LOCK_NAME}"

  def _take_lease(self):
    import tensorstore as ts  # noqa: PLC0415  (Orbax's store client)
    kv = ts.KvStore.open(os.fspath(self.workdir).rstrip("/") + "/").result()
    me = _holder()
    for _ in range(3):  # a lost race re-reads what the winner wrote
      seen = kv.read(LOCK_NAME).result()
      if seen.state == "value":
        try:
          held = json.loads(seen.value)
        except ValueError:
          held = {}
        age = time.time() - float(held.get("renewed", 0.0))
        same_host_gone = held.get("host") == me["host"] and _process_gone(held.get("pid"))
        if age < self.lease_s and not same_host_gone:
          raise self._locked(
              _describe(held), f" (lease renewed {age:.0f} s ago; taken over when "
              f"{self.lease_s:.0f} s old, or delete {self._url} if that trainer is gone)")
        log.warning("taking over the lease %s of %s (%s)", self._url, _describe(held),
                    "its process is gone" if same_host_gone else f"{age:.0f} s old")
      stamp = kv.write(LOCK_NAME, self._lease_bytes(me),
                       if_equal=seen.stamp.generation).result()
      if stamp.generation:  # empty: another trainer wrote first
        self._kv, self._generation, self._me = kv, stamp.generation, me
        self._renewer = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._renewer.start()
        return
    raise self._locked("another trainer", " (it took the lease at the same moment)")

  @staticmethod
  def _lease_bytes(me: dict) -> bytes:
    return json.dumps(dict(me, renewed=time.time())).encode()

  def _renew(self):
    while not self._stop.wait(self.lease_s / 4):
      try:
        stamp = self._kv.write(LOCK_NAME, self._lease_bytes(self._me),
                               if_equal=self._generation).result()
      except Exception as e:  # noqa: BLE001  (unreachable for now: try again later)
        log.warning("could not renew the lease %s: %s", self._url, storage.error_line(e))
        continue
      if not stamp.generation:
        self._lost.set()
        return
      self._generation = stamp.generation
