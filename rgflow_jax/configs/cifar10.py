"""RG-Flow on CIFAR-10 (paper App. G, Table G1).

Default: the paper's CelebA hyperparameters (n_layer = 8, 6, 4, 2, n_res = 4, width
512), images as they are. The paper reports 3.35 bits/dim (Real NVP: 3.61) and FID
98.5. Needs the prepared tfds set (docs/data.md). Variants: ``:cpu``, ``:smoke``, and ``authors`` / ``realnvp`` / ``gaussian`` / ``accel`` (base.py).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "cifar10"
  c.model.n_layers = (8, 6, 4, 2)
  base.apply_variant(c, arg)
  return c
