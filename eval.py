"""``python eval.py ...``: the repository's shortcut for ``rgflow-eval``
(:mod:`rgflow_jax.cli.eval`); ``--help`` lists its flags, configs and variants."""

from rgflow_jax.cli.eval import run

if __name__ == "__main__":
  run()
