"""rgflow-jax: RG-Flow (hierarchical, explainable normalizing flow) in JAX.

The functional API, params first (params that carry their flow: :func:`load` or
:func:`bind`)::

    run = rgflow_jax.load("runs/msds1-cpu")
    z, log_det = rgflow_jax.encode(run.params, y)       # image -> latent (RG direction)
    rf = rgflow_jax.receptive_field(run.params, 2, 0)   # (L, L), paper eq. 14

What the commands run, as functions of a config and a folder::

    config = rgflow_jax.get_config("msds1:cpu")         # rgflow-train --config msds1:cpu
    rgflow_jax.train_and_evaluate(config, "runs/a")
    rgflow_jax.evaluate(config, "runs/a")               # rgflow-eval
    rgflow_jax.compare(["runs/a", "runs/b"], "out")     # rgflow-compare
    rgflow_jax.import_run(config, "theirs.pth", "runs/c")  # rgflow-convert

Layers, lowest first; a module imports only from its own layer or lower ones
(a test in ``tests/test_package.py``):

    core     the model: geometry, RNVP blocks, RG-Flow, Real NVP, priors, local inference
    io       paths (local, gs://), checkpoints, locks, metrics logs, processes
    data     data sets and the input pipeline
    configs  ml_collections configs: one default per key (base.py), named variants
    paper    the paper's readings: latents, inpainting, receptive fields, FID, figures
    explore  the latent explorer: its computations, web server and page, offline file
    run      a run's setup, jitted steps, training, evaluation, comparison
    nnx      the flow as a Flax NNX module (the [flax] extra; imported only by its users)
    cli      the commands (train, eval, compare, convert) and the CPU process tuning

Importing the package changes nothing about the process: the CPU tuning in
:mod:`rgflow_jax.cli.xla_cpu` is applied by the commands, and only on CPU. The public
names are imported on first use (JAX with them); :func:`load` imports the run layer
(Orbax) on its first call.
"""

import importlib

# The public names, imported on first use: ``import rgflow_jax`` (and the commands'
# ``rgflow_jax.configs``) does not import JAX, so a bad command line is refused at once.
_EXPORTS = {
    "FlowParams": "rgflow_jax.core.bound", "bind": "rgflow_jax.core.bound",
    "bits_per_dim": "rgflow_jax.core.bound", "decode": "rgflow_jax.core.bound",
    "encode": "rgflow_jax.core.bound", "log_prob": "rgflow_jax.core.bound",
    "sample": "rgflow_jax.core.bound", "Geometry": "rgflow_jax.core.geometry",
    "level_of_site": "rgflow_jax.core.geometry", "RealNVP": "rgflow_jax.core.realnvp",
    "RGFlow": "rgflow_jax.core.rgflow", "init": "rgflow_jax.core.rgflow",
    "receptive_field": "rgflow_jax.paper.receptive",
    "receptive_field_at_site": "rgflow_jax.paper.receptive",
    "RGFlowError": "rgflow_jax.core.errors", "get_config": "rgflow_jax.configs",
    "train_and_evaluate": "rgflow_jax.run.training", "evaluate": "rgflow_jax.run.evaluation",
    "compare": "rgflow_jax.run.compare", "import_run": "rgflow_jax.run.convert",
    "export_run": "rgflow_jax.run.convert",
}
__all__ = sorted([*_EXPORTS, "load"])
__version__ = "0.1.0"


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'rgflow_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted([*globals(), *_EXPORTS])


def load(workdir, checkpoint="best"):
  """A trained run: (flow, params, config, step, checkpoint); see
  :func:`rgflow_jax.run.trained.load`."""
  from rgflow_jax.run import trained  # noqa: PLC0415  (Orbax, only when a run is read)
  return trained.load(workdir, checkpoint)
