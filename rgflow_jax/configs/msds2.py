"""RG-Flow on MSDS2 (paper App. B, Table B1): orientation global, colour local.

Default: the paper's MSDS model (n_layer = 4, n_res = 4, width 512; 80,518,144
parameters), Laplace prior. The paper reports 1.01 bits/dim on the test set
(1.53 with a Gaussian prior). Variants: ``:cpu`` (minutes on 2 cores), ``:smoke``,
and ``authors`` / ``realnvp`` / ``gaussian`` / ``accel`` (base.py).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "msds2"
  return base.apply_variant(c, arg)
