"""rgflow-jax: RG-Flow (hierarchical, explainable normalizing flow) in JAX."""

from rgflow_jax import xla_cpu

xla_cpu.configure()  # before anything starts a JAX backend; see xla_cpu's docstring

# ruff: noqa: E402

from rgflow_jax.geometry import Geometry, level_of_site
from rgflow_jax.model import RGFlow, init
from rgflow_jax.realnvp import RealNVP

__all__ = ["Geometry", "RGFlow", "RealNVP", "init", "level_of_site"]
__version__ = "0.1.0"
