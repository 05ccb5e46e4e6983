"""The authors' weights in rgflow-jax, against fixtures their own code wrote.

tests/fixtures/authors/*.npz were written by their PyTorch code, unchanged (a harness
that imports it; float64; every parameter moved off the identity): their state_dict, input
images and dequantisation noise, and what their code computed from them. The key lists
are the names and shapes of their paper-size state_dicts (CelebA, MSDS)."""

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import FIXTURES
from rgflow_jax import RGFlow
from rgflow_jax.core import pixels
from rgflow_jax.io import authors_weights

AUTHORS = FIXTURES / "authors"
NPZ = sorted(p.name for p in AUTHORS.glob("*.npz"))


def _per_level(text):
  values = [int(v) for v in str(text).split(",")]
  return values[0] if len(values) == 1 else tuple(values)


def _fixture(name):
  f = np.load(AUTHORS / name)
  cfg = json.loads(str(f["config"]))
  flow = RGFlow(image_size=cfg["L"], channels=cfg["C"], block_size=cfg["k"],
                n_layers=_per_level(cfg["nlayers"]), n_res=_per_level(cfg["nresblocks"]),
                mlp_depth=_per_level(cfg["nmlp"]), hidden=_per_level(cfg["nhidden"]),
                layer_order="authors")
  state = {k.removeprefix("state/"): f[k] for k in f.files if k.startswith("state/")}
  return flow, state, f


def _rel(got, want):
  got, want = np.asarray(got), np.asarray(want)
  return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def test_the_fixtures_cover_the_sizes_asked_for():
  configs = [json.loads(str(np.load(AUTHORS / n)["config"])) for n in NPZ]
  sizes = {(c["L"], c["k"], c["C"]) for c in configs}
  assert {k for _, k, _ in sizes} == {2, 4} and {c for *_, c in sizes} == {1, 3}
  assert 32 in {L for L, *_ in sizes} and min(L for L, *_ in sizes) <= 16


@pytest.mark.parametrize("name", NPZ)
def test_their_weights_compute_their_function(x64, name):
  flow, state, f = _fixture(name)
  params, _ = authors_weights.import_state(flow, state)
  params = jax.tree.map(jnp.asarray, params)
  z, log_det = jax.jit(flow.encode)(params, jnp.asarray(f["y"]))
  assert _rel(z, f["z"]) < 1e-10 and _rel(log_det, f["log_det"]) < 1e-10
  assert _rel(flow.prior_log_prob(z) + log_det, f["log_prob"]) < 1e-10
  # Bits/dim from their images and noise, through rgflow-jax's own pixel transform.
  x = (f["images"].astype(np.float64) + f["noise"]) / 256.0
  log_px = jax.jit(flow.log_prob_pixels)(params, jnp.asarray(x))
  assert _rel(pixels.bits_per_dim(log_px, flow.num_dims), f["bits_per_dim"]) < 1e-10
  x_dec, dec_ld = jax.jit(flow.decode)(params, jnp.asarray(f["z_prior"]))
  assert _rel(x_dec, f["x_decoded"]) < 1e-10 and _rel(dec_ld, f["decode_log_det"]) < 1e-10


@pytest.mark.parametrize("name", NPZ)
def test_export_of_import_is_their_state_name_by_name(name):
  flow, state, _ = _fixture(name)
  params, buffers = authors_weights.import_state(flow, state)
  out = authors_weights.export_state(flow, params, buffers)
  assert sorted(out) == sorted(state)
  for key, value in state.items():
    assert out[key].shape == value.shape, key
    np.testing.assert_array_equal(out[key], value, err_msg=key)
  # Without the buffers their code would only recompute: the parameters still match.
  bare = authors_weights.export_state(flow, params)
  for key in state:
    if "saved_" not in key:
      np.testing.assert_array_equal(bare[key], state[key], err_msg=key)


def test_a_data_parallel_prefix_is_accepted():
  flow, state, _ = _fixture("L8_C1_k4.npz")
  want, _ = authors_weights.import_state(flow, state)
  got, _ = authors_weights.import_state(flow, {f"module.net.{k}": v for k, v in state.items()})
  jax.tree.map(np.testing.assert_array_equal, want, got)


def _refusal(flow, state):
  with pytest.raises(authors_weights.StateDictError) as err:
    authors_weights.import_state(flow, state)
  message = str(err.value)
  assert "\n" not in message
  return message


def test_a_state_dict_that_does_not_fit_is_refused_naming_the_tensor():
  flow, state, _ = _fixture("L8_C1_k4.npz")
  name = "layers.1.t_layers.0.res_blocks.0.1.weight_v"
  missing = dict(state)
  del missing[name]
  assert repr(name) in _refusal(flow, missing)
  extra = dict(state, **{"layers.4.s_layers.0.scale.scale": np.zeros(16)})
  assert "'layers.4.s_layers.0.scale.scale'" in _refusal(flow, extra)
  bad = dict(state, **{name: state[name][:, :-1]})
  assert repr(name) in _refusal(flow, bad) and "shape" in _refusal(flow, bad)
  other = RGFlow(image_size=16, channels=1, block_size=4, n_layers=1, n_res=1, hidden=4,
                 mlp_depth=1, layer_order="authors")  # another size: one level more
  assert "'layers.4." in _refusal(other, state)
  wider = RGFlow(image_size=8, channels=3, block_size=4, n_layers=1, n_res=1, hidden=4,
                 mlp_depth=1, layer_order="authors")  # other channels: other shapes
  assert "saved for another size" in _refusal(wider, state)
  paper = RGFlow(image_size=8, channels=1, block_size=4, n_layers=1, n_res=1, hidden=4,
                 mlp_depth=1)
  assert "layer_order=authors" in _refusal(paper, state)
  wrong_mask = dict(state, **{"layers.0.mask_left": 1 - state["layers.0.mask_left"]})
  assert "'layers.0.mask_left'" in _refusal(flow, wrong_mask)


@pytest.mark.parametrize("config,n_layers", [("paper-celeba", (8, 6, 4, 2)),
                                             ("paper-msds", 4)])
def test_the_paper_size_key_maps_are_one_to_one(config, n_layers):
  """Names and shapes only (float32 zeros): every tensor of their paper-size models
  lands in one parameter of ours, and ours give back exactly their names and shapes."""
  keys = json.loads(gzip.decompress((AUTHORS / f"keys_{config}.json.gz").read_bytes()))
  flow = RGFlow(image_size=32, channels=3, block_size=4, n_layers=n_layers, n_res=4,
                hidden=512, mlp_depth=2, layer_order="authors")
  state = {name: np.zeros(shape, np.float32) for name, shape in keys.items()}
  for name in state:  # the buffers the mapping checks
    if name.endswith(("mask_left", "mask_right")):
      parity = int(name.endswith("right"))
      state[name][:] = (np.add.outer(np.arange(4), np.arange(4)) + parity) % 2 == 0
    if name == "prior.scale":
      state[name] = np.float32(authors_weights.LAPLACE_SCALE)
  params, _ = authors_weights.import_state(flow, state)
  want = jax.eval_shape(lambda: flow.init(jax.random.PRNGKey(0)))
  assert jax.tree.structure(params) == jax.tree.structure(want)
  for got, shape in zip(jax.tree.leaves(params), jax.tree.leaves(want), strict=True):
    assert got.shape == shape.shape
  out = authors_weights.export_state(flow, params)
  assert {name: list(v.shape) for name, v in out.items()} == keys
