"""RG-Flow on 3D Chairs (paper App. G, Table G1), or any folder of images.

Default: n_layer = 8 at every level, n_res = 4, width 512; each image centre-cropped
to 300 x 300, bicubic to 32 x 32, random horizontal flips; a deterministic 10 % test
split by file name. The paper reports 0.930 bits/dim (Real NVP: 0.933) and FID 36.2.
Point ``--config.data.location.path`` at the unpacked ``rendered_chairs`` folder (docs/data.md). Variants: ``:cpu``, ``:smoke``, and ``authors`` / ``realnvp`` / ``gaussian`` / ``accel`` (base.py).
"""

from rgflow_jax.configs import base


def get_config(arg: str = ""):
  c = base.base_config()
  c.data.name = "folder"
  c.data.location.path = "data/rendered_chairs"
  c.data.crop = 300
  c.data.flip = True
  c.model.n_layers = (8,)
  base.apply_variant(c, arg)
  if base.size_variant(arg) == "smoke":
    c.data.crop = 0  # test folders hold small images
  return c
