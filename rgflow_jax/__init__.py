"""rgflow-jax: RG-Flow (hierarchical, explainable normalizing flow) in JAX.

Layers, lowest first; a module imports only from its own layer or lower ones
(a test in ``tests/test_package.py``):

    core     the model: geometry, RNVP blocks, RG-Flow, Real NVP, priors, local inference
    io       paths (local, gs://), checkpoints, locks, metrics logs, processes
    data     data sets and the input pipeline
    configs  ml_collections configs: one default per key (base.py), named variants
    paper    the paper's readings: latents, inpainting, receptive fields, FID, figures
    run      a run's setup, jitted steps, training, evaluation, comparison
    cli      the commands (train, eval, compare, convert) and the CPU process tuning

Importing the package changes nothing about the process: the CPU tuning in
:mod:`rgflow_jax.cli.xla_cpu` is applied by the commands, and only on CPU.
"""

from rgflow_jax.core.geometry import Geometry, level_of_site
from rgflow_jax.core.realnvp import RealNVP
from rgflow_jax.core.rgflow import RGFlow, init
from rgflow_jax.paper.receptive import receptive_field, receptive_field_at_site

__all__ = ["Geometry", "RGFlow", "RealNVP", "init", "level_of_site", "receptive_field",
           "receptive_field_at_site"]
__version__ = "0.1.0"
