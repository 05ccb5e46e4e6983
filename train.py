"""``python train.py ...``: the repository's shortcut for ``rgflow-train``
(:mod:`rgflow_jax.cli.train`); ``--help`` lists its flags, configs and variants."""

from rgflow_jax.cli.train import run

if __name__ == "__main__":
  run()
