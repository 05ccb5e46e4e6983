"""RG-Flow on CelebA 32 x 32 (paper section 4, App. A, Table G1).

Default: the paper's CelebA model, n_layer = 8, 6, 4, 2 at levels 0-3, n_res = 4,
width 512 (100,647,680 parameters), Laplace prior, AdamW 1e-3 with weight decay 5e-5,
clipping 1, batch 64; centre crop 148, bicubic to 32, random horizontal flips. The
paper reports 3.47 bits/dim on the test set (Real NVP: 3.36) and FID 31.3.

Needs the prepared tfds set (docs/data.md). Variants: ``:cpu``, ``:smoke``, and ``authors`` / ``realnvp`` / ``gaussian`` / ``accel`` (base.py).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "celeba"
  c.data.flip = True
  c.model.n_layers = (8, 6, 4, 2)
  base.apply_variant(c, arg)
  return c
