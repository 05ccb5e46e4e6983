"""A trained run, loaded for the functional API: ``rgflow_jax.load(workdir)``.

    run = rgflow_jax.load("runs/msds1-cpu")          # or gs://bucket/runs/...
    rf = rgflow_jax.receptive_field(run.params, 2, 0)
    images = rgflow_jax.sample(run.params, jax.random.PRNGKey(0), 16)

The run folder holds its config (config.json, written by ``rgflow-train``), so nothing
else is needed: the flow is built from it, and the parameters come from its best
checkpoint (the lowest test bits/dim saved), the latest, or a given step.
"""

from __future__ import annotations

from typing import NamedTuple

from rgflow_jax.core import bound
from rgflow_jax.io import storage
from rgflow_jax.run import evaluation, run_config


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
  flow, params, step, used, _ = evaluation.load_params(config, workdir, checkpoint)
  return TrainedRun(flow, bound.bind(flow, params), config, step, used)
