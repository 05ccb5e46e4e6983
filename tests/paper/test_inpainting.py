"""Inpainting: the prior's mode from an identity flow, improvement on the corruption, PSNR."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_flow, square_region, tiny_flow
from rgflow_jax.core import cones, pixels
from rgflow_jax.paper import inpainting, latents


def test_inpainting_an_identity_flow_recovers_the_prior_mode():
  flow = tiny_flow(16, 1, 4)
  params = flow.init(jax.random.PRNGKey(0))  # identity
  truth = np.full((16, 16, 1), 0.5, np.float32)  # pixel value of the prior's mode z = 0
  truth[:4] = 0.9
  region = square_region(16, 6, 5, size=4)
  corrupted = np.where(region[..., None], 0.05, truth)
  x, info = inpainting.inpaint(flow, params, corrupted, region, jax.random.PRNGKey(1),
                               n_starts=8, steps=100, lr=0.1, truth=truth)
  assert info["psnr"] > 40
  np.testing.assert_array_equal(np.asarray(x)[~region], truth[~region])
  # The optimiser never changed a latent outside the cone: there z is the encoding
  # of the corrupted (= true) image.
  y0, _ = pixels.to_flow(jnp.asarray(corrupted)[None])
  z0 = np.asarray(latents.encode_jit(flow, params, y0)[0][0])  # compiled by inpaint
  outside = ~np.asarray(info["free_mask"])
  np.testing.assert_array_equal(np.asarray(info["z"])[outside], z0[outside])
  assert info["free_latents"] == int(cones.inference_cone(flow, region).sum())


def test_inpainting_with_random_parameters_improves_on_the_corruption():
  flow, params = random_flow(16, 1, 4)
  truth = np.asarray(flow.sample(params, jax.random.PRNGKey(5), 1, 0.5))[0]
  region = square_region(16, 4, 4, size=4)  # the shape of the previous test's region
  corrupted = np.where(region[..., None], 1.0, truth)
  # the previous test's settings: its compiled program serves this one too
  x, info = inpainting.inpaint(flow, params, corrupted, region, jax.random.PRNGKey(2),
                               n_starts=8, steps=100, lr=0.1, truth=truth)
  assert info["psnr"] > inpainting.psnr(corrupted, truth, region[..., None])
  with pytest.raises(ValueError, match="inpaint expects"):
    inpainting.inpaint(flow, params, corrupted[:8], region, jax.random.PRNGKey(2))
  with pytest.raises(ValueError, match="how must be"):
    inpainting.free_latents(flow, region, "some")
  rnd = inpainting.free_latents(flow, region, "random", 0)
  assert rnd.sum() == inpainting.free_latents(flow, region, "cone").sum()


def test_psnr_by_hand():
  a = np.zeros((2, 4, 4, 3))
  b = a.copy()
  b[0, 0, 0, 0] = 0.5  # one error of 0.5 among 96 values: mse = 0.25 / 96
  assert abs(inpainting.psnr(a, b) - 10 * np.log10(96 / 0.25)) < 1e-12
  mask = np.zeros((2, 4, 4, 1), bool)
  mask[0, :2, :2] = True  # 4 sites x 3 channels = 12 values hold that error
  assert abs(inpainting.psnr(a, b, mask) - 10 * np.log10(12 / 0.25)) < 1e-12
  assert inpainting.psnr(a, a) == float("inf")


@pytest.mark.parametrize("on_cone", [True, False])
def test_on_step_reports_every_adam_step_and_changes_nothing(on_cone):
  flow, params = random_flow(16, 1, 4)
  truth = np.asarray(flow.sample(params, jax.random.PRNGKey(5), 1, 0.5))[0]
  region = square_region(16, 2, 9, size=3)
  steps = []
  kwargs = dict(n_starts=4, steps=6, lr=0.1, on_cone=on_cone)
  x, info = inpainting.inpaint(flow, params, truth, region, jax.random.PRNGKey(3),
                               on_step=steps.append, **kwargs)
  jax.effects_barrier()
  assert sorted(int(s) for s in steps) == [1, 2, 3, 4, 5, 6]  # (callbacks are unordered)
  x0, info0 = inpainting.inpaint(flow, params, truth, region, jax.random.PRNGKey(3), **kwargs)
  np.testing.assert_array_equal(np.asarray(info["z"]), np.asarray(info0["z"]))
  np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))
