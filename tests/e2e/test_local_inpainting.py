"""Inpainting on the cone against inpainting on the whole image: the same latents at the end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import cone_case, square_region
from rgflow_jax.core import pixels
from rgflow_jax.paper import inpainting, latents


@pytest.mark.parametrize("L,C,order,top,left,size", [(16, 2, "authors", 14, 2, 4)])
def test_local_inpainting_ends_at_the_latents_of_the_full_path(x64_module, L, C, order, top,
                                                               left, size):
  """Same starts, same Adam steps: the local objective differs from the full one by a
  constant, so both paths pick the same start and end at the same latents."""
  flow, params, image = cone_case(L, C, order, seed=4)
  region = square_region(L, top, left, size)
  rng = np.random.default_rng(1)
  corrupted = np.where(region[..., None], rng.uniform(size=image.shape[1:]), image[0])
  args = (flow, params, corrupted, region, jax.random.PRNGKey(7))
  kw = dict(n_starts=6, steps=12, lr=0.05, truth=image[0])
  x_loc, loc = inpainting.inpaint(*args, **kw)  # local is the default for RG-Flow's cone
  x_full, full = inpainting.inpaint(*args, on_cone=False, **kw)
  moved = np.abs(np.asarray(full["z"]) - np.asarray(latents.encode_jit(
      flow, params, pixels.to_flow(jnp.asarray(corrupted)[None])[0])[0][0])).max()
  assert moved > 0.1  # the free latents did move
  np.testing.assert_allclose(loc["z"], full["z"], rtol=0, atol=1e-9)
  np.testing.assert_allclose(x_loc, x_full, rtol=0, atol=1e-9)
  np.testing.assert_allclose(loc["neg_log_lik"], full["neg_log_lik"], rtol=1e-10)
  assert loc["psnr"] == pytest.approx(full["psnr"], rel=1e-9)
  with pytest.raises(ValueError, match="local inpainting computes on RG-Flow's cone"):
    inpainting.inpaint(*args, free="all", on_cone=True, **kw)
