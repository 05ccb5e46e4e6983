"""RG-Flow on MSDS1 (paper App. B, Table B1): colour global, orientation local.

Default: the paper's MSDS model, n_layer = 4 at every level, n_res = 4, width 512
(80,518,144 parameters), Laplace prior, AdamW 1e-3, batch 64. The paper reports
0.906 bits/dim on the test set (RG-Flow + Laplace; 1.60 with a Gaussian prior).

Variants (``--config configs/msds1.py:VARIANT``):
  cpu    sized to learn in minutes on a 2-core CPU (``make demo``: 10 minutes).
  smoke  seconds, for tests.
  and, comma-separated after a size, ``realnvp`` (the Real NVP baseline at the same
  parameter count) and ``gaussian`` (the prior ablation): ``:cpu,realnvp``.
  accel  one GPU or TPU host: bfloat16 matmuls, compilation cache (``:accel``).
"""

from rgflow_jax.configs import base


# The authors' PyTorch code on a 2-core CPU machine (2026-11): a small model (n_layer 2,
# n_res 1, width 128, batch 64) reached these test bits/dim after these minutes.
AUTHORS_CPU_CURVE = {"minutes": [2, 4, 6, 8, 10, 12],
                     "bpd": [4.54, 3.92, 3.61, 3.45, 3.31, 3.25]}


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "msds1"
  base.apply_variant(c, arg)
  if base.size_variant(arg) == "cpu":
    c.reference_curve = {"authors' PyTorch, small model": AUTHORS_CPU_CURVE}
  return c
