"""The FID Inception-v3 network: its description against PyTorch's, and its weights files.

fixtures/inception/torch_reference.npz holds pool3 features computed by PyTorch (float64,
stored as float32) from random weights of the real architecture
(``random_state(7)``); fixtures/inception/make_torch_reference.py wrote it.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import FIXTURES
from rgflow_jax.paper import inception

REFERENCE = FIXTURES / "inception" / "torch_reference.npz"


@pytest.fixture(scope="module")
def reference():
  with np.load(REFERENCE) as z:
    ref = {k: z[k] for k in z.files}
  ref["params"] = inception.params_from_state(inception.random_state(int(ref["seed"])))
  return ref


def test_state_shapes_are_pytorch_fids():
  shapes = inception.state_shapes()
  # 94 convolutions (each with its batch norm's 4 tensors), 21.8 M numbers without the
  # classifier: pytorch-fid's FID Inception.
  assert len(shapes) == 94 * 5
  assert sum(int(np.prod(s)) for s in shapes.values()) == 21_820_000
  assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
  assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
  assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
  assert shapes["Mixed_7c.branch_pool.bn.running_var"] == (192,)


@pytest.mark.parametrize("blocks, shape", [(0, (35, 35, 192)), (3, (35, 35, 288)),
                                           (4, (17, 17, 768)), (8, (17, 17, 768)),
                                           (9, (8, 8, 1280)), (11, (8, 8, 2048))])
def test_feature_map_shapes(reference, blocks, shape):
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8)
  out = jax.eval_shape(lambda x: inception.features(reference["params"], x, blocks), images)
  assert out.shape == (2,) + shape


def test_features_equal_pytorchs_float64(x64, reference):
  """Every kind of input (32 x 32 colour, 17 x 23 gray, 299 x 299), one image of each,
  through one compiled network (the float32 test below takes the three colour images).
  The suite compiles at XLA's lowest backend optimisation level (conftest.py); there
  float64 convolutions run several times slower, so this program is compiled at the
  default level."""
  kinds = ["square", "gray", "full"]
  x = jnp.concatenate([inception.preprocess(reference[k][:1], jnp.float64) for k in kinds])
  network = jax.jit(inception.network,
                    compiler_options={"xla_backend_optimization_level": 2})
  ours = np.asarray(network(reference["params"], x))
  assert ours.dtype == np.float64
  for kind, got in zip(kinds, ours, strict=True):
    np.testing.assert_allclose(got, reference[f"{kind}_features"][0], rtol=1e-6, atol=1e-6,
                               err_msg=kind)


def test_features_equal_pytorchs_float32(reference):
  """What evaluation runs: float32, jitted; 1e-4 relative to the float64 reference."""
  images = reference["square"]
  ours = np.asarray(jax.jit(inception.features)(reference["params"], images))
  assert ours.dtype == np.float32 and ours.shape == (3, inception.FEATURES)
  want = reference["square_features"]
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_average_pool_ignores_padding_and_max_pool_pads_with_minus_infinity():
  x = jnp.ones((1, 5, 5, 1))
  assert np.all(np.asarray(inception._apply(inception.Pool("avg", 3, 1, 1), {}, x)) == 1.0)
  y = -jnp.ones((1, 5, 5, 1))
  assert np.all(np.asarray(inception._apply(inception.Pool("max", 3, 1, 1), {}, y)) == -1.0)


def test_npz_weights_round_trip(tmp_path, reference):
  state = inception.random_state(int(reference["seed"]))
  state["fc.weight"] = np.zeros((3, 2048), np.float32)  # extra tensors are ignored
  np.savez(tmp_path / "w.npz", **state)
  loaded = inception.load_weights(tmp_path / "w.npz")
  jax.tree.map(np.testing.assert_array_equal, loaded, reference["params"])


def test_weights_errors_are_one_line(tmp_path):
  def error(path):
    with pytest.raises(inception.InceptionWeightsError) as e:
      inception.load_weights(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message

  assert "--config.eval.fid.weights" in error(tmp_path / "missing.npz")
  (tmp_path / "garbage.npz").write_bytes(b"not a zip")
  assert "is not an .npz archive (a zip of .npy arrays)" in error(tmp_path / "garbage.npz")
  (tmp_path / "pickle.npz").write_bytes(b"\x80\x04K\x01.")  # what np.load takes for a pickle
  assert "is not an .npz archive" in error(tmp_path / "pickle.npz")
  (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 torn")  # a zip cut short
  assert "cannot read" in error(tmp_path / "torn.npz")
  state = inception.random_state(0)
  wrong = dict(state, **{"Mixed_5b.branch1x1.conv.weight": np.zeros((64, 192, 3, 3))})
  np.savez(tmp_path / "shape.npz", **wrong)
  assert "(64, 192, 3, 3), expected (64, 192, 1, 1)" in error(tmp_path / "shape.npz")
  del state["Mixed_7c.branch_pool.bn.running_var"]
  np.savez(tmp_path / "short.npz", **state)
  assert "'Mixed_7c.branch_pool.bn.running_var' (expected shape (192,))" in error(
      tmp_path / "short.npz")


def test_features_refuse_a_wrong_shape_in_one_line(reference):
  with pytest.raises(ValueError, match=r"\(N, H, W, 1 or 3\), got shape \(32, 32, 3\)"):
    inception.features(reference["params"], np.zeros((32, 32, 3), np.uint8))


@pytest.fixture
def served(tmp_path):
  """A folder served over HTTP on 127.0.0.1: (folder, base URL)."""
  import functools
  import http.server
  import threading

  folder = tmp_path / "served"
  folder.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  handler.log_message = lambda *a: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield folder, f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()


def test_download_once_to_the_cache_with_the_hash_checked(tmp_path, served):
  import hashlib

  folder, base = served
  body = b"weights" * 1000
  digits = hashlib.sha256(body).hexdigest()[:8]
  (folder / f"inception-{digits}.npz").write_bytes(body)
  cache = tmp_path / "cache"
  path = inception.cached_weights(cache, f"{base}/inception-{digits}.npz")
  assert Path(path).read_bytes() == body
  (folder / f"inception-{digits}.npz").unlink()  # a second call reads the cache
  assert inception.cached_weights(cache, f"{base}/inception-{digits}.npz") == path
  (folder / "inception-00000000.npz").write_bytes(body)  # a file that fails its hash
  with pytest.raises(inception.InceptionWeightsError, match="expected 00000000"):
    inception.cached_weights(cache, f"{base}/inception-00000000.npz")
  with pytest.raises(inception.InceptionWeightsError, match="cannot download .* by hand"):
    inception.cached_weights(cache, f"{base}/inception-12345678.npz")  # 404
  assert sorted(p.name for p in cache.iterdir()) == [Path(path).name]  # no partial files
