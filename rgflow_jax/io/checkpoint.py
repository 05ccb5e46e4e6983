"""Checkpoints with Orbax: the last K, and the best by test bits/dim, written atomically.

A checkpoint holds the train state (params, optimizer state, step, rng) as an Orbax
pytree and, beside it, a JSON item with the data pipeline's position and counters.
Orbax writes into a temporary folder and renames it when complete (on GCS, where
there is no rename, it writes a commit marker last), so a run killed mid-save leaves
the previous checkpoint intact. The workdir may be local or ``gs://`` / ``s3://``.

Integrity. The JSON item holds a SHA-256 digest of every array of the state, computed
before the save and committed with it; a restore recomputes it. A checkpoint whose
files were damaged (flipped bytes, truncated or deleted files) fails to restore or to
match its digest: :meth:`Checkpoints.restore_newest_intact` then names it in one log
line, moves it aside to ``<workdir>/damaged/`` (never deletes it) and goes on to the
next newest one. Read-only users (eval.py) skip a damaged one without moving it.

Latest and best as one decision. A save writes the latest checkpoint first, with the
step's test bits/dim in its JSON item, and then, if that is a new best, the same
state to ``best/``. A kill between the two leaves a latest checkpoint whose record
says "best" while ``best/`` lacks it: :meth:`Checkpoints.complete_best`, called on
resume, finishes that save from the restored state. So after a kill at any moment
``best/`` holds the best of the evaluations whose checkpoint was committed, and an
evaluation that was cut short is redone (deterministically) by the resumed run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sys
import time
import traceback

import jax
import numpy as np
import orbax.checkpoint as ocp

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import multihost, storage

log = logging.getLogger(__name__)


class DamagedCheckpoint(RGFlowError, RuntimeError):
  """A checkpoint that cannot be restored as it was saved; the message says why."""


class CheckpointWriteError(RGFlowError, OSError):
  """A checkpoint that could not be written (full disk, lost rights); one line."""


class NoIntactCheckpoint(RGFlowError, FileNotFoundError):
  """Checkpoints there, none of them intact; ``damaged`` lists (step, why) of each, and
  none of them has been moved."""

  def __init__(self, message: str, damaged: list[tuple[int, str]]):
    super().__init__(message)
    self.damaged = damaged


class IncompatibleCheckpoint(RGFlowError, ValueError):
  """An intact checkpoint of another model (other parameter names or shapes): not
  damage, so nothing is moved; the message names the first differences."""


def _root_cause(e: BaseException) -> str:
  """The innermost error of a chain, in one line: for a damaged checkpoint, tensorstore's
  own words ("OUT_OF_RANGE: Error reading ... in OCDBT database ...") rather than
  Orbax's wrapper, whose message carries the whole TensorStore spec."""
  while (e.__cause__ or e.__context__) is not None:
    e = e.__cause__ or e.__context__
  return storage.error_line(e)


def _abandoned_read(unraisable) -> bool:
  """Whether an unraisable exception is the debris of a failed Orbax read: its pending
  array reads (coroutines of orbax, finalised with their error) and tensorstore's
  callbacks into the event loop Orbax closed when the restore failed."""
  code = getattr(unraisable.object, "cr_code", None)
  if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
    return True
  return (unraisable.exc_type is RuntimeError
          and str(unraisable.exc_value) == "Event loop is closed")


class _AbandonedReadLog(logging.Filter):
  """Drops asyncio's "... exception was never retrieved" records of Orbax's read tasks
  (each with the whole TensorStore spec) and of tensorstore's futures (whose errors are
  status lines such as "OUT_OF_RANGE: Error reading ..."), and only those."""

  STATUS = re.compile(r"^[A-Z][A-Z_]+: ")  # absl::Status, as tensorstore words its errors

  def filter(self, record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is None or "exception was never retrieved" not in str(record.msg):
      return True
    frames = traceback.extract_tb(error.__traceback__)
    from_orbax = any(f"{os.sep}orbax{os.sep}" in frame.filename for frame in frames)
    return not (from_orbax or self.STATUS.match(str(error)))


_ABANDONED_READ_LOG = _AbandonedReadLog()


def _drop_abandoned_reads() -> None:
  """From the first :class:`Checkpoints` on, Python's hook for unraisable exceptions drops
  :func:`_abandoned_read` ones (hundreds of tracebacks per damaged checkpoint, around the
  one line that names it) and passes every other to the hook it replaces; asyncio's log
  drops the same reads' unretrieved task errors (:class:`_AbandonedReadLog`)."""
  logging.getLogger("asyncio").addFilter(_ABANDONED_READ_LOG)  # once: filters are a set
  previous = sys.unraisablehook
  if getattr(previous, "drops_abandoned_reads", False):
    return

  def hook(unraisable):
    if not _abandoned_read(unraisable):
      previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


def _cause(e: BaseException) -> str:
  """The operating system's own words when tensorstore names them (it wraps them in a
  message of several paths), else the first line of the error."""
  text = str(e)
  if "No space left on device" in text or "os_error_code='28'" in text:
    return "the disk is full"
  if "Permission denied" in text:
    return "permission denied"
  return storage.error_line(e)


def _saved_param_shapes(state_dir) -> dict | None:
  """{"['level0']['dec']...": shape} of the params a checkpoint's metadata records, or
  None where the metadata cannot be read (a damaged checkpoint: restoring decides)."""
  try:
    tree = ocp.StandardCheckpointHandler().metadata(state_dir)
    tree = getattr(tree, "item_metadata", tree)  # newer Orbax wraps the tree
    return {jax.tree_util.keystr(p): tuple(m.shape) for p, m in
            jax.tree_util.tree_flatten_with_path(tree["params"])[0]}
  except Exception:  # noqa: BLE001  (any unreadable metadata: left to the restore)
    return None


# The keys of a checkpoint's JSON item: their types, in words for a message.
_META_TYPES = {"step": (int, "an integer"), "skipped_steps": (int, "an integer"),
               "best_test_bpd": ((int, float), "a number"),
               "test_bpd": ((int, float), "a number"),
               "train_seconds": ((int, float), "a number"),
               "data_state": (dict, "a JSON object"), "state_sha256": (str, "a string")}


def check_meta(meta, step: int, path) -> None:
  """A checkpoint's JSON item, checked where it is read. Values that cannot be true (a
  step other than its folder's, a negative or non-finite best bits/dim, a negative test
  bits/dim) are damage (:class:`DamagedCheckpoint`: the caller falls back as for damaged
  files); a malformed item (not an object, a value of the wrong type) is a one-line
  :class:`~rgflow_jax.io.storage.RunFileError` naming the file and the key."""
  def malformed(what):
    raise storage.RunFileError(f"{path}: {what}; restore the file from a copy, or move "
                               f"checkpoint {step} out of the run folder")

  if not isinstance(meta, dict):
    malformed(f"not a JSON object but a {type(meta).__name__}")
  for key, (kinds, words) in _META_TYPES.items():
    value = meta.get(key)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
      malformed(f"\"{key}\" is {value!r}, not {words}")
  if meta.get("step") is not None and meta["step"] != step:
    raise DamagedCheckpoint(f"{path} records step {meta['step']} in the folder of step {step}")
  if (meta.get("skipped_steps") or 0) < 0:
    malformed(f"\"skipped_steps\" is {meta['skipped_steps']}, not >= 0")
  best = meta.get("best_test_bpd")
  if best is not None and not (math.isfinite(best) and best >= 0):
    raise DamagedCheckpoint(f"{path} records a best test bits/dim of {best}, which no "
                            "evaluation gives")
  test = meta.get("test_bpd")
  if test is not None and math.isfinite(test) and test < 0:
    raise DamagedCheckpoint(f"{path} records a test bits/dim of {test}, which no "
                            "evaluation gives")


def state_digest(state) -> str:
  """SHA-256 over every array of ``state``: its path in the tree, dtype, shape, bytes."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  for (path, leaf), host in zip(leaves, jax.device_get([l for _, l in leaves]), strict=True):
    a = np.ascontiguousarray(host)
    h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


class _ReadOnlyNotes(logging.Filter):
  """Drops Orbax's warnings that a read-only manager is read-only (it prints two per
  manager on every open; a reader asked for exactly that)."""

  NOTES = ("CheckpointManagerOptions.read_only=True", "Given directory is read only")

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.NOTES)


_READ_ONLY_NOTES = _ReadOnlyNotes()


class Checkpoints:
  """``workdir/checkpoints`` (the last ``keep``) and ``workdir/best`` (lowest test BPD)."""

  def __init__(self, workdir, keep: int = 3, read_only: bool = False):
    """``read_only`` (eval.py, compare.py): open a run that may be training right now
    without creating, deleting or cleaning up anything in it (a writer's unfinished
    checkpoint folder stays where it is)."""
    workdir = storage.absolute(workdir)
    self.read_only = read_only
    # A damaged checkpoint's reads (and metadata reads) fail in Orbax's threads, during
    # and after the restore: their debris is dropped from here on.
    _drop_abandoned_reads()
    self._size = None  # bytes of one checkpoint on disk, once one is written
    # Synchronous saves: when save() returns the checkpoint is committed, so a kill
    # at any later moment loses at most one checkpoint interval.
    if read_only:
      logging.getLogger("absl").addFilter(_READ_ONLY_NOTES)  # once: filters are a set
      common = dict(read_only=True, create=False, cleanup_tmp_directories=False,
                    enable_async_checkpointing=False)
      keep_last = keep_best = None
    else:
      common = dict(create=True, cleanup_tmp_directories=True,
                    enable_async_checkpointing=False)
      keep_last, keep_best = keep, 1
    self.last = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep_last, **common))
    self.best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep_best, best_fn=lambda m: m["test_bpd"], best_mode="min",
            keep_checkpoints_without_metrics=False, **common))

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state, meta: dict, test_bpd: float | None = None):
    if self.read_only:
      raise RuntimeError("these checkpoints were opened read-only")
    meta = dict(meta, state_sha256=state_digest(state), test_bpd=test_bpd)
    args, best = self._save_args(state, meta), self._is_new_best(step, meta)
    try:
      storage.check_free_space(self.last.directory, self._bytes_needed(state) * (1 + best),
                               f"checkpoint {step}")
      full = None
    except storage.StorageError as e:
      full = e
    if multihost.any_process(full is not None):  # the save is collective: all or none
      raise full or storage.StorageError(f"not enough disk space for checkpoint {step} on "
                                         "another process (see its log)")
    self._write(self.last, step, args)
    if best:
      self._write(self.best, step, args, metrics={"test_bpd": float(test_bpd)})

  def _bytes_needed(self, state) -> int:
    """A checkpoint's size: the last one's on disk, or before there is one, the arrays'
    bytes and Orbax's metadata (a few KiB per array), with a margin."""
    if self._size is None:
      leaves = jax.tree.leaves(state)
      return int(1.1 * sum(getattr(x, "nbytes", 8) for x in leaves)) + 2048 * len(leaves)
    return int(1.1 * self._size)

  def _write(self, mngr, step: int, args, **kwargs):
    try:
      mngr.save(step, args=args, force=True, **kwargs)
    except Exception as e:  # noqa: BLE001  (tensorstore, Orbax and the OS raise many types)
      if multihost.lost_peer_message(e) is not None:
        raise  # a peer died during the collective save: the caller says so
      raise CheckpointWriteError(
          f"cannot write checkpoint {step} to {mngr.directory} ({_cause(e)}); the run "
          f"resumes from the last checkpoint once that is fixed") from None
    if self._size is None:
      self._size = storage.size_on_disk(mngr.directory / str(step))

  @staticmethod
  def _save_args(state, meta):
    return ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta))

  def _is_new_best(self, step: int, meta: dict) -> bool:
    """The step's evaluation is finite (NaN would rank as the best), no worse than the
    run's best so far, and not in ``best/`` yet (a rerun of a step after a fallback)."""
    test, best = meta.get("test_bpd"), meta.get("best_test_bpd")
    return (test is not None and math.isfinite(test) and (best is None or test <= best)
            and step not in self.best.all_steps())

  def complete_best(self, step: int, state, meta: dict) -> bool:
    """After resuming from ``step`` (``meta`` as restored, digest included): write the
    best checkpoint its save had decided on but not written (a kill between the two)."""
    if not self._is_new_best(step, meta):
      return False
    log.warning("step %d was the best evaluation (test bits/dim %.4f) but best/ lacks it "
                "(the run was stopped between the two saves): saving it now", step,
                meta["test_bpd"])
    meta = dict(meta, state_sha256=state_digest(state))
    self._write(self.best, step, self._save_args(state, meta),
                metrics={"test_bpd": float(meta["test_bpd"])})
    return True

  def restore(self, state_like, step: int | None = None, best: bool = False):
    """(state, meta) at ``step`` (default: latest, or the best with ``best=True``)."""
    mngr = self.best if best else self.last
    if step is None:
      step = mngr.best_step() if best else mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    try:
      out = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001  (tensorstore, JSON and Orbax raise many types)
      raise DamagedCheckpoint(f"{mngr.directory / str(step)} cannot be read "
                              f"({_root_cause(e)})") from None
    meta = out["meta"]
    check_meta(meta, step, mngr.directory / str(step) / "meta" / "metadata")
    meta = dict(meta)
    want = meta.pop("state_sha256", None)  # checkpoints from before digests: trusted
    if want is not None and state_digest(out["state"]) != want:
      raise DamagedCheckpoint(f"{mngr.directory / str(step)} does not match the digest "
                              "saved with it")
    return out["state"], meta

  def find_newest_intact(self, state_like, best: bool = False):
    """(state, meta, step, damaged) of the newest checkpoint that restores intact (for
    ``best=True``: the best one), where ``damaged`` lists (step, why) of the newer ones
    that did not. Nothing is moved. FileNotFoundError if there is no checkpoint,
    :class:`NoIntactCheckpoint` if none is intact."""
    mngr = self.best if best else self.last
    steps = [mngr.best_step()] if best else sorted(mngr.all_steps(), reverse=True)
    steps = [s for s in steps if s is not None]
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    damaged = []
    for step in steps:
      self.check_shapes(state_like, step, best)  # another model is refused, not set aside
      try:
        return (*self.restore(state_like, step, best), step, damaged)
      except DamagedCheckpoint as e:
        damaged.append((step, str(e)))
    raise NoIntactCheckpoint(f"no intact checkpoint in {mngr.directory} ("
                             + "; ".join(why for _, why in damaged) + ")", damaged)

  def restore_newest_intact(self, state_like, best: bool = False):
    """(state, meta, step) of :meth:`find_newest_intact`; the damaged newer ones are
    named in the log and, unless read-only, moved to ``<workdir>/damaged/``. Where
    none is intact, nothing is moved (:class:`NoIntactCheckpoint`)."""
    try:
      state, meta, step, damaged = self.find_newest_intact(state_like, best)
    except NoIntactCheckpoint as e:
      if self.read_only:  # named in the log, as a reader names those it skips
        self.set_aside(e.damaged, best)
      raise
    self.set_aside(damaged, best)
    return state, meta, step

  def set_aside(self, damaged: list[tuple[int, str]], best: bool = False) -> None:
    """Move the damaged checkpoints ``damaged`` ((step, why) pairs) to
    ``<workdir>/damaged/``, a log line each; read-only, only log that they are skipped."""
    mngr = self.best if best else self.last
    for step, why in damaged:
      if self.read_only:
        log.warning("checkpoint damaged, skipped: %s", why)
      else:
        log.warning("checkpoint damaged, set aside as %s: %s", self._set_aside(mngr, step),
                    why)

  def check_shapes(self, state_like, step: int, best: bool = False) -> None:
    """Raise :class:`IncompatibleCheckpoint` if checkpoint ``step``'s parameters, as its
    metadata records them, differ in names or shapes from ``state_like``'s. A checkpoint
    whose metadata cannot be read passes: restoring it tells whether it is damaged."""
    directory = (self.best if best else self.last).directory / str(step)
    saved = _saved_param_shapes(directory / "state")
    if saved is None:
      return
    want = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in
            jax.tree_util.tree_flatten_with_path(state_like["params"])[0]}
    diffs = [f"{k} {saved.get(k, 'absent')} saved, {want.get(k, 'absent')} now"
             for k in sorted(set(saved) | set(want)) if saved.get(k) != want.get(k)]
    if diffs:
      more = f" (and {len(diffs) - 2} more)" if len(diffs) > 2 else ""
      raise IncompatibleCheckpoint(
          f"{directory} holds a model of other parameter shapes than this config's: "
          f"params{'; params'.join(diffs[:2])}{more}; use the config it was trained with "
          "(its config.json, or the same --config and overrides), or a new --workdir")

  @property
  def damaged(self):
    return self.last.directory.parent / "damaged"

  def _set_aside(self, mngr, step: int):
    """Process 0 moves it (every process found the same damage in the shared files)."""
    aside = self.damaged / f"{mngr.directory.name}-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    if jax.process_index() == 0:
      self.damaged.mkdir(parents=True, exist_ok=True)
      (mngr.directory / str(step)).rename(aside)
    multihost.barrier(f"set aside {mngr.directory.name} {step}")
    mngr.reload()
    return aside

  def wait(self):
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    for mngr in (self.last, self.best):
      # A manager removes unfinished saves in a thread of its own that close() does not
      # wait for (its next save does): a run that stops before saving must, or that
      # thread dies at interpreter exit with a traceback.
      await_cleanup = getattr(mngr, "_maybe_await_cleanup_tmp_directory", None)
      if await_cleanup is not None:
        await_cleanup()
      mngr.close()
