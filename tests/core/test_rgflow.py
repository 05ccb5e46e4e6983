"""RG-Flow specifics: locality (the Jacobian lives in the causal cone), shared and
per-level parameters, jit/eager agreement, the authors' parameter counts, config
errors. The
bijection tests shared with Real NVP are in test_registry.py."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_flow, tiny_flow
from rgflow_jax import RGFlow
from rgflow_jax.core import cones
from rgflow_jax.core.geometry import DECIMATOR, DISENTANGLER
from rgflow_jax.core.rgflow import Stage


def _images(flow, n, dtype, seed=3):
  return 1.5 * jax.random.normal(jax.random.PRNGKey(seed), (n,) + flow.event_shape, dtype)


@pytest.mark.parametrize("L,C,k", [(16, 1, 4), (8, 2, 2)])
def test_encode_jacobian_lives_in_the_structural_cone(x64, L, C, k):
  flow, params = random_flow(L, C, k, jnp.float64, n_layers=2)
  x = _images(flow, 1, jnp.float64)
  flat = lambda v: flow.encode(params, v.reshape(x.shape))[0].reshape(-1)
  jac = np.asarray(jax.jit(jax.jacfwd(flat))(x.reshape(-1)))
  # Site-level support: sum |d z[site, c] / d x[pixel, c']| over both channel axes.
  site_jac = np.abs(jac.reshape(L * L, C, L * L, C)).sum(axis=(1, 3))
  support = site_jac > 0
  cone = cones.dependency_matrix(flow)
  assert not cone.all()  # the cone is a real restriction...
  assert not support[~cone].any()  # ...that the Jacobian respects,
  assert support[cone].mean() > 0.99  # and fills.


@pytest.mark.parametrize("order,shifted", [("paper", DISENTANGLER), ("authors", DECIMATOR)])
def test_the_stage_schedule_is_the_rg_sweep(order, shifted):
  flow = tiny_flow(16, 1, 4, layer_order=order)
  want = tuple(Stage(h, layer, 2 if layer == shifted else 0, f"level{h}")
               for h in range(3) for layer in (DISENTANGLER, DECIMATOR))
  assert flow.stages() == want
  assert flow.stages(inverse=True) == want[::-1]
  # one stage ends each level: its last in the RG direction, the decimator
  ends = [st for st in flow.stages() if st.ends_level]
  assert [st.level for st in ends] == [0, 1, 2]
  assert all(st.layer == DECIMATOR and st == [s for s in want if s.level == st.level][-1]
             for st in ends)
  shared = tiny_flow(16, 1, 4, share_levels=True)
  assert {st.param_key for st in shared.stages()} == {"shared"}


def test_encode_and_decode_stages_hand_on_each_stages_input():
  flow, params = random_flow(16, 2, 4)
  x = _images(flow, 2, jnp.float32)
  z, log_det, kept = flow.encode_stages(params, x)
  np.testing.assert_array_equal(z, flow.encode(params, x)[0])
  y, _ = x, None
  for stage, (x_in, ld) in zip(flow.stages(), kept, strict=True):  # replayed one by one
    e = flow.geometry.edge(stage.level)
    np.testing.assert_array_equal(x_in, y.reshape(2, e * e, 2))
    y, ld_now = flow.apply_stage(params, stage, y, inverse=False)
    np.testing.assert_array_equal(ld, ld_now)
    if stage.layer == DECIMATOR:
      y = y[:, ::2, ::2]
  np.testing.assert_allclose(log_det, sum(ld.sum(axis=1) for _, ld in kept), rtol=1e-6)
  x_back, _, kept_back = flow.decode_stages(params, z)
  np.testing.assert_allclose(x_back, x, atol=1e-4)
  assert [k.shape[1] for k in kept_back] == [flow.geometry.edge(st.level) ** 2
                                             for st in flow.stages(inverse=True)]


def test_shared_levels_share_one_parameter_set():
  flow, params = random_flow(16, 1, 4, share_levels=True)
  assert list(params) == ["shared"]
  x = _images(flow, 2, jnp.float32)
  z, _ = jax.jit(flow.encode)(params, x)
  x_back, _ = jax.jit(flow.decode)(params, z)
  assert float(jnp.max(jnp.abs(x_back - x))) <= 1e-4
  unshared = tiny_flow(16, 1, 4)
  n_unshared = unshared.num_params(unshared.init(jax.random.PRNGKey(0)))
  assert flow.num_params(params) * unshared.num_levels == n_unshared


def test_per_level_sizes():
  flow = tiny_flow(16, 1, 4, n_layers=(3, 1, 2), hidden=(8, 16, 4), mlp_depth=(1, 2, 1))
  params = flow.init(jax.random.PRNGKey(0))
  assert params["level0"]["dis"]["scale"].shape == (3, 2, 16)
  assert params["level1"]["dec"]["layers"][1]["v"].shape == (1, 2, 1, 16, 16)
  assert len(params["level2"]["dec"]["layers"]) == 2


def test_jit_and_eager_agree():
  flow, params = random_flow(16, 3, 4)
  x = _images(flow, 2, jnp.float32)
  z_eager, ld_eager = flow.encode(params, x)
  z_jit, ld_jit = jax.jit(flow.encode)(params, x)
  np.testing.assert_allclose(z_jit, z_eager, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ld_jit, ld_eager, rtol=1e-5, atol=1e-4)
  u = jax.random.randint(jax.random.PRNGKey(1), (2,) + flow.event_shape, 0, 256)
  rng = jax.random.PRNGKey(2)
  np.testing.assert_allclose(jax.jit(flow.bits_per_dim)(params, u, rng),
                             flow.bits_per_dim(params, u, rng), rtol=1e-5)


def test_paper_celeba_model_has_the_reference_parameter_count():
  flow = RGFlow(image_size=32, channels=3, block_size=4, n_layers=(8, 6, 4, 2),
                n_res=4, hidden=512, mlp_depth=2)
  assert flow.count_params() == 100_647_680  # from init's shapes, nothing allocated


@pytest.mark.parametrize("kw,count", [
    (dict(n_layers=4, n_res=4, hidden=512, mlp_depth=2), 80_518_144),  # paper MSDS
    (dict(n_layers=1, n_res=1, hidden=32, mlp_depth=1), 53_760),  # the benchmark's "tiny"
    (dict(n_layers=2, n_res=1, hidden=128, mlp_depth=2), 948_224),  # the benchmark's "small"
])
def test_parameter_counts_match_the_authors_code(kw, count):
  flow = RGFlow(**kw)
  shapes = jax.eval_shape(flow.init, jax.random.PRNGKey(0))
  assert flow.num_params(shapes) == count


def test_the_authors_layer_order_is_the_papers_up_to_a_translation_at_one_level(x64):
  """One level (L = k): shifting by k/2 is its own inverse there, so the authors'
  encode is T o (the paper's encode) o T with T that translation. With two levels and
  the same parameters the two orders are different functions."""
  paper, params = random_flow(4, 2, 4, jnp.float64)
  authors = dataclasses.replace(paper, layer_order="authors")
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4, 2), jnp.float64)
  t = lambda a: jnp.roll(a, (2, 2), axis=(1, 2))  # noqa: E731
  z_paper, ld_paper = paper.encode(params, t(x))
  z_authors, ld_authors = authors.encode(params, x)
  np.testing.assert_allclose(z_authors, t(z_paper), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(ld_authors, ld_paper, rtol=1e-12)
  np.testing.assert_allclose(authors.decode(params, z_authors)[0], x, atol=1e-12)

  paper, params = random_flow(8, 1, 4, jnp.float64)
  authors = dataclasses.replace(paper, layer_order="authors")
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 8, 1), jnp.float64)
  z_authors, _ = authors.encode(params, x)
  np.testing.assert_allclose(authors.decode(params, z_authors)[0], x, atol=1e-12)
  for shift in range(4):  # no translation of the input makes them agree
    z_paper, _ = paper.encode(params, jnp.roll(x, (shift, shift), axis=(1, 2)))
    assert np.abs(np.asarray(jnp.roll(z_paper, (-shift, -shift), axis=(1, 2)))
                  - np.asarray(z_authors)).max() > 1e-3


# ------------------------------------------------------------- configuration
@pytest.mark.parametrize("kwargs,msg", [
    (dict(image_size=30), "image_size must be block_size"),
    (dict(image_size=48), "image_size must be block_size"),
    (dict(block_size=3, image_size=24), "block_size must be an even"),
    (dict(channels=0), "channels must be"),
    (dict(n_layers=(1, 2)), "one value per level"),
    (dict(prior="cauchy"), "prior must be one of"),
    (dict(layer_order="reversed"), "layer_order must be one of"),
    (dict(n_layers=(2, 2, 1, 1), share_levels=True), "share_levels"),
])
def test_bad_model_config_is_a_clear_error(kwargs, msg):
  with pytest.raises(ValueError, match=msg):
    RGFlow(**kwargs)


def test_from_config_rejects_unknown_keys():
  with pytest.raises(ValueError, match="unknown RGFlow config keys"):
    RGFlow.from_config({"image_size": 8, "block_size": 4, "hiden": 3})
  flow = RGFlow.from_config({"name": "rgflow", "image_size": 8, "channels": 1,
                             "n_layers": [1, 2]})
  assert flow.n_layers == (1, 2)


def test_operations_are_scoped_by_level_and_layer_for_profiles():
  """What a GPU profile groups kernels by: each layer's operations under
  ``level<h>/<dis|dec>`` in the compiled program's metadata, both directions."""
  flow = RGFlow(image_size=8, channels=1, block_size=2, n_layers=1, n_res=1, hidden=4,
                mlp_depth=1)
  params = flow.init(jax.random.PRNGKey(0))
  x = jnp.zeros((1, 8, 8, 1))
  for fn in (flow.encode, flow.decode):
    text = jax.jit(fn).lower(params, x).compile().as_text()
    assert all(f"level{h}/{layer}" in text for h in range(3) for layer in ("dis", "dec"))
