"""The registry of flows behind ``config.model.name``: every entry has the same API
(init / encode / decode / log_prob / bits_per_dim / sample, ``level_of_site``)."""

from __future__ import annotations

from rgflow_jax.core.realnvp import RealNVP
from rgflow_jax.core.rgflow import RGFlow

MODELS = {"rgflow": RGFlow, "realnvp": RealNVP}


def build(model_config):
  """A flow from a model config (a ConfigDict or mapping with a ``name`` key)."""
  cfg = dict(model_config)
  name = cfg.pop("name", "rgflow")
  if name not in MODELS:
    raise ValueError(f"config.model.name must be one of {sorted(MODELS)}, got {name!r}")
  return MODELS[name].from_config(cfg)


def is_rgflow(flow) -> bool:
  return isinstance(flow, RGFlow)
