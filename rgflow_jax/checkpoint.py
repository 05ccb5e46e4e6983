"""Checkpoints with Orbax: the last K, and the best by test bits/dim, written atomically.

A checkpoint holds the train state (params, optimizer state, step, rng) as an Orbax
pytree and, beside it, a JSON item with the data pipeline's position and counters.
Orbax writes into a temporary folder and renames it when complete (on GCS, where
there is no rename, it writes a commit marker last), so a run killed mid-save leaves
the previous checkpoint intact. The workdir may be local or ``gs://`` / ``s3://``.
"""

from __future__ import annotations

import math

import jax
import orbax.checkpoint as ocp

from rgflow_jax import storage


class Checkpoints:
  """``workdir/checkpoints`` (the last ``keep``) and ``workdir/best`` (lowest test BPD)."""

  def __init__(self, workdir, keep: int = 3, read_only: bool = False):
    """``read_only`` (eval.py, compare.py): open a run that may be training right now
    without creating, deleting or cleaning up anything in it (a writer's unfinished
    checkpoint folder stays where it is)."""
    workdir = storage.absolute(workdir)
    self.read_only = read_only
    # Synchronous saves: when save() returns the checkpoint is committed, so a kill
    # at any later moment loses at most one checkpoint interval.
    if read_only:
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
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta))
    self.last.save(step, args=args, force=True)
    if test_bpd is not None and math.isfinite(test_bpd):  # NaN would rank as the best
      self.best.save(step, args=args, metrics={"test_bpd": float(test_bpd)}, force=True)

  def restore(self, state_like, step: int | None = None, best: bool = False):
    """(state, meta) at ``step`` (default: latest, or the best with ``best=True``)."""
    mngr = self.best if best else self.last
    if step is None:
      step = mngr.best_step() if best else mngr.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    out = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def wait(self):
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.last.close()
    self.best.close()
