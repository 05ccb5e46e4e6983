"""``python compare.py ...``: the repository's shortcut for ``rgflow-compare``
(:mod:`rgflow_jax.cli.compare`); ``--help`` lists its flags, configs and variants."""

from rgflow_jax.cli.compare import run

if __name__ == "__main__":
  run()
