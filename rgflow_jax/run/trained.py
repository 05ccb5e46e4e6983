"""A trained run, loaded for the functional API: ``rgflow_jax.load(workdir)``.

    run = rgflow_jax.load("runs/msds1-cpu")          # or gs://bucket/runs/...
    rf = rgflow_jax.receptive_field(run.params, 2, 0)
    images = rgflow_jax.sample(run.params, jax.random.PRNGKey(0), 16)

The run folder holds its config (config.json, written by ``rgflow-train``), so nothing
else is needed: the flow is built from it, and the parameters come from its best
checkpoint (the lowest test bits/dim saved), the latest, or a given step.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from rgflow_jax.core import bound
from rgflow_jax.io import checkpoint, storage
from rgflow_jax.run import jit_steps, run_config

log = logging.getLogger(__name__)


class Loaded(NamedTuple):
  """A run's model as evaluated: ``checkpoint`` says which one was read ('best',
  'latest' or 'step') and ``fallback`` why, where the best was asked for and not read."""

  flow: object
  params: object
  step: int
  checkpoint: str
  fallback: str | None = None


def load_params(config, workdir, which="best") -> Loaded:
  """The run's best (default) or latest intact checkpoint's parameters, or those of
  checkpoint step ``which`` (an int), as a :class:`Loaded` (which unpacks as ``flow,
  params, step, checkpoint, fallback``). A run without an intact best checkpoint falls
  back to the latest, saying so."""
  step = None
  if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
    step, which = int(which), "step"
  elif which not in ("best", "latest"):
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step (an int), got {which!r}")
  workdir = storage.as_path(workdir)
  if not (workdir / "checkpoints").is_dir():
    raise FileNotFoundError(f"no checkpoints in {workdir}: train first "
                            f"(rgflow-train --config ... --workdir {workdir})")
  run_config.check_resume_compatible(workdir, config, run_config.EVAL_KEYS_THAT_MATTER,
                                     use="evaluate")
  flow = run_config.build_model(config)
  state = jit_steps.init_state(flow, config, run_config.param_dtype(config))
  ckpts = checkpoint.Checkpoints(workdir, read_only=True)
  try:
    restored, fallback = None, None
    if which == "step":
      last, best = set(ckpts.last.all_steps()), set(ckpts.best.all_steps())
      if step not in last | best:
        raise FileNotFoundError(f"{workdir} has no checkpoint of step {step}; it has "
                                f"steps {sorted(last | best) or 'none'}")
      best = step not in last
      ckpts.check_shapes(state, step, best)
      state, meta = ckpts.restore(state, step, best)
      return Loaded(flow, state["params"], step, "step")
    if which == "best":
      if ckpts.best.best_step() is None:
        fallback = f"{workdir}/best holds no checkpoint (no evaluation was saved)"
      else:
        try:
          restored = ckpts.restore_newest_intact(state, best=True)
        except FileNotFoundError as e:
          fallback = str(e)
      if fallback:
        log.warning("%s; evaluating the latest intact checkpoint instead", fallback)
    state, meta, _ = restored or ckpts.restore_newest_intact(state)
  finally:
    ckpts.close()
  return Loaded(flow, state["params"], int(meta["step"]),
                "best" if restored else "latest", fallback)


class TrainedRun(NamedTuple):
  """What :func:`load` returns: ``params`` carry ``flow``; ``checkpoint`` is 'best',
  'latest' or 'step', and ``step`` the training step it was saved at."""

  flow: object
  params: bound.FlowParams
  config: object
  step: int
  checkpoint: str


def load(workdir, checkpoint="best") -> TrainedRun:
  """The trained run in ``workdir`` (a local path or ``gs://``): its flow, its parameters
  (a :class:`~rgflow_jax.core.bound.FlowParams`) and its config.

  ``checkpoint``: 'best' (default; the latest where no evaluation was saved, with a
  warning), 'latest', or a step number.
  """
  workdir = storage.as_path(workdir)
  if not workdir.exists():
    raise FileNotFoundError(f"no run folder at {workdir}")
  config = run_config.saved_config(workdir)
  flow, params, step, used, _ = load_params(config, workdir, checkpoint)
  return TrainedRun(flow, bound.bind(flow, params), config, step, used)
