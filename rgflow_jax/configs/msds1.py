"""RG-Flow on MSDS1 (paper App. B, Table B1): colour global, orientation local.

Default: the paper's MSDS model, n_layer = 4 at every level, n_res = 4, width 512
(80,518,144 parameters), Laplace prior, AdamW 1e-3, batch 64. The paper reports
0.906 bits/dim on the test set (RG-Flow + Laplace; 1.60 with a Gaussian prior).

Variants (``--config configs/msds1.py:VARIANT``):
  cpu    sized to learn in minutes on a 2-core CPU (``make demo``: 10 minutes).
  smoke  seconds, for tests.
  and, comma-separated after a size, ``realnvp`` (the Real NVP baseline at the same
  parameter count) and ``gaussian`` (the prior ablation): ``:cpu,realnvp``.
  accel  one GPU or TPU host: bfloat16 matmuls, every loop a scan (``:accel``).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "msds1"
  base.apply_variant(c, arg)
  return c
