"""rgflow-jax: RG-Flow (hierarchical, explainable normalizing flow) in JAX.

Importing the package changes nothing about the process: the CPU tuning in
:mod:`rgflow_jax.xla_cpu` is applied by the entry points (train.py, eval.py, the
benchmark), and only when they run on CPU.
"""

from rgflow_jax.geometry import Geometry, level_of_site
from rgflow_jax.model import RGFlow, init
from rgflow_jax.realnvp import RealNVP
from rgflow_jax.receptive import receptive_field as receptive_field_at_site
from rgflow_jax.receptive import receptive_field_by_index as receptive_field

__all__ = ["Geometry", "RGFlow", "RealNVP", "init", "level_of_site", "receptive_field",
           "receptive_field_at_site"]
__version__ = "0.1.0"
