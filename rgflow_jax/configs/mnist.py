"""RG-Flow on MNIST padded to 32 x 32 (one channel); not in the paper.

Default: n_layer = 4, n_res = 4, width 512 at every level. Needs the prepared tfds
set (docs/data.md). Variants: ``:cpu``, ``:smoke``, and ``authors`` / ``realnvp`` / ``gaussian`` / ``accel`` (base.py).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "mnist"
  c.model.channels = 1
  base.apply_variant(c, arg, channels=1)
  return c
