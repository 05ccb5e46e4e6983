"""The registry of flows behind ``config.model.name``: every entry has the same API
(init / encode / decode / log_prob / bits_per_dim / sample, ``level_of_site``)."""

from __future__ import annotations

from rgflow_jax import execution
from rgflow_jax.model import RGFlow
from rgflow_jax.realnvp import RealNVP

MODELS = {"rgflow": RGFlow, "realnvp": RealNVP}


def build(model_config):
  """A flow from a model config (a ConfigDict or mapping with a ``name`` key)."""
  cfg = dict(model_config)
  name = cfg.pop("name", "rgflow")
  for key in execution.FIELDS:  # a run saved when they were model keys: config.execution
    cfg.pop(key, None)
  if name not in MODELS:
    raise ValueError(f"config.model.name must be one of {sorted(MODELS)}, got {name!r}")
  return MODELS[name].from_config(cfg)


def is_rgflow(flow) -> bool:
  return isinstance(flow, RGFlow)
