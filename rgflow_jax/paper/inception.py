"""The Inception-v3 feature extractor of FID, as pure functions of its weights.

The network is the one every FID figure since Heusel et al. (2017) uses: TensorFlow's
Inception-v3 of 2015-12-05, as ported to PyTorch by pytorch-fid
(``pt_inception-2015-12-05-6726825d.pth``). Its features are the 2,048 values of the
last average pool ("pool3"). The input convention is pytorch-fid's: uint8 images to
[0, 1], bilinear resize to 299 x 299 (half-pixel centres, no antialiasing), then to
[-1, 1]; one channel is repeated to three.

The FID network differs from torchvision's Inception-v3 in two places: its average
pools divide by the number of pixels inside the image (TensorFlow's padding), and the
last block pools by maximum.

Weights (:func:`load_weights`) come from a file the user provides: pytorch-fid's
``.pth`` (read with torch, ``pip install "rgflow-jax[torch]"``) or the same tensors as
an ``.npz`` keyed by their PyTorch names (docs/evaluation.md has the one-line
conversion). The network is described as data (:data:`NETWORK`); :func:`state_shapes`
lists every tensor it reads, and :func:`random_state` gives random weights of the
real architecture, for tests and smoke runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import storage

SIZE = 299  # the network's input side
FEATURES = 2048
BN_EPS = 1e-3
# pytorch-fid's published weights; torch.hub names files by their sha256's first digits.
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth")


class InceptionWeightsError(RGFlowError, ValueError):
  """A weights file that is missing, unreadable or not the FID Inception's; one line."""


# ------------------------------------------------------------- the network as data
@dataclasses.dataclass(frozen=True)
class Conv:
  """Convolution (no bias) + batch norm + ReLU: pytorch-fid's ``<name>.conv`` / ``.bn``."""
  name: str
  cin: int
  cout: int
  kernel: tuple[int, int]
  stride: int = 1
  pad: tuple[int, int] = (0, 0)


@dataclasses.dataclass(frozen=True)
class Pool:
  """'max', or 'avg' over the pixels inside the image only (TensorFlow's padding)."""
  kind: str
  size: int = 3
  stride: int = 1
  pad: int = 0


@dataclasses.dataclass(frozen=True)
class Fork:
  """Both ops on the same input, outputs concatenated along channels."""
  a: Conv
  b: Conv


def _conv(prefix: str, name: str, cin: int, cout: int, kernel=1, stride=1, pad=0) -> Conv:
  pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
  return Conv(f"{prefix}{name}", cin, cout, pair(kernel), stride, pair(pad))


def _block_a(name, cin, pool_features):
  c = lambda *a, **k: _conv(name + ".", *a, **k)  # noqa: E731
  return (name, [
      [c("branch1x1", cin, 64)],
      [c("branch5x5_1", cin, 48), c("branch5x5_2", 48, 64, 5, pad=2)],
      [c("branch3x3dbl_1", cin, 64), c("branch3x3dbl_2", 64, 96, 3, pad=1),
       c("branch3x3dbl_3", 96, 96, 3, pad=1)],
      [Pool("avg", 3, 1, 1), c("branch_pool", cin, pool_features)]])


def _block_b(name, cin):
  c = lambda *a, **k: _conv(name + ".", *a, **k)  # noqa: E731
  return (name, [
      [c("branch3x3", cin, 384, 3, stride=2)],
      [c("branch3x3dbl_1", cin, 64), c("branch3x3dbl_2", 64, 96, 3, pad=1),
       c("branch3x3dbl_3", 96, 96, 3, stride=2)],
      [Pool("max", 3, 2)]])


def _block_c(name, c7):
  c = lambda *a, **k: _conv(name + ".", *a, **k)  # noqa: E731
  row = dict(kernel=(1, 7), pad=(0, 3))
  col = dict(kernel=(7, 1), pad=(3, 0))
  return (name, [
      [c("branch1x1", 768, 192)],
      [c("branch7x7_1", 768, c7), c("branch7x7_2", c7, c7, **row),
       c("branch7x7_3", c7, 192, **col)],
      [c("branch7x7dbl_1", 768, c7), c("branch7x7dbl_2", c7, c7, **col),
       c("branch7x7dbl_3", c7, c7, **row), c("branch7x7dbl_4", c7, c7, **col),
       c("branch7x7dbl_5", c7, 192, **row)],
      [Pool("avg", 3, 1, 1), c("branch_pool", 768, 192)]])


def _block_d(name, cin):
  c = lambda *a, **k: _conv(name + ".", *a, **k)  # noqa: E731
  return (name, [
      [c("branch3x3_1", cin, 192), c("branch3x3_2", 192, 320, 3, stride=2)],
      [c("branch7x7x3_1", cin, 192), c("branch7x7x3_2", 192, 192, (1, 7), pad=(0, 3)),
       c("branch7x7x3_3", 192, 192, (7, 1), pad=(3, 0)),
       c("branch7x7x3_4", 192, 192, 3, stride=2)],
      [Pool("max", 3, 2)]])


def _block_e(name, cin, pool: str):
  c = lambda *a, **k: _conv(name + ".", *a, **k)  # noqa: E731
  split = lambda n, i: Fork(c(f"{n}a", i, 384, (1, 3), pad=(0, 1)),  # noqa: E731
                            c(f"{n}b", i, 384, (3, 1), pad=(1, 0)))
  return (name, [
      [c("branch1x1", cin, 320)],
      [c("branch3x3_1", cin, 384), split("branch3x3_2", 384)],
      [c("branch3x3dbl_1", cin, 448), c("branch3x3dbl_2", 448, 384, 3, pad=1),
       split("branch3x3dbl_3", 384)],
      [Pool(pool, 3, 1, 1), c("branch_pool", cin, 192)]])


STEM = [_conv("", "Conv2d_1a_3x3", 3, 32, 3, stride=2), _conv("", "Conv2d_2a_3x3", 32, 32, 3),
        _conv("", "Conv2d_2b_3x3", 32, 64, 3, pad=1), Pool("max", 3, 2),
        _conv("", "Conv2d_3b_1x1", 64, 80), _conv("", "Conv2d_4a_3x3", 80, 192, 3),
        Pool("max", 3, 2)]
# Each block: (name, branches); a branch is a list of ops; outputs concatenated.
BLOCKS = [_block_a("Mixed_5b", 192, 32), _block_a("Mixed_5c", 256, 64),
          _block_a("Mixed_5d", 288, 64), _block_b("Mixed_6a", 288),
          _block_c("Mixed_6b", 128), _block_c("Mixed_6c", 160), _block_c("Mixed_6d", 160),
          _block_c("Mixed_6e", 192), _block_d("Mixed_7a", 768),
          _block_e("Mixed_7b", 1280, "avg"), _block_e("Mixed_7c", 2048, "max")]
NETWORK = (STEM, BLOCKS)


def convolutions() -> list[Conv]:
  """Every convolution of the network, in order."""
  out = [op for op in STEM if isinstance(op, Conv)]
  for _, branches in BLOCKS:
    for branch in branches:
      for op in branch:
        if isinstance(op, Fork):
          out += [op.a, op.b]
        elif isinstance(op, Conv):
          out.append(op)
  return out


def state_shapes() -> dict[str, tuple[int, ...]]:
  """The PyTorch tensors the network reads: name -> shape (convolutions OIHW)."""
  shapes = {}
  for c in convolutions():
    shapes[f"{c.name}.conv.weight"] = (c.cout, c.cin) + c.kernel
    for stat in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{c.name}.bn.{stat}"] = (c.cout,)
  return shapes


# --------------------------------------------------------------------- weights
def params_from_state(state: dict, source: str = "weights") -> dict:
  """PyTorch-named tensors -> params {conv name: {w (HWIO), scale, shift}}, batch norm
  folded into a per-channel scale and shift. Extra tensors (the classifier, counters)
  are ignored; a missing or misshapen one raises :class:`InceptionWeightsError`."""
  params = {}
  for key, shape in state_shapes().items():
    if key not in state:
      raise InceptionWeightsError(
          f"{source} has no tensor '{key}' (expected shape {shape}): not the FID "
          "Inception-v3 weights (pytorch-fid's pt_inception-2015-12-05); see "
          "docs/evaluation.md")
    got = tuple(np.shape(state[key]))
    if got != shape:
      raise InceptionWeightsError(f"{source}: tensor '{key}' has shape {got}, expected "
                                  f"{shape}: not the FID Inception-v3 weights")
  for c in convolutions():
    get = lambda k: np.asarray(state[f"{c.name}.{k}"], np.float64)  # noqa: E731
    scale = get("bn.weight") / np.sqrt(get("bn.running_var") + BN_EPS)
    params[c.name] = {
        "w": np.asarray(state[f"{c.name}.conv.weight"], np.float32).transpose(2, 3, 1, 0),
        "scale": scale.astype(np.float32),
        "shift": (get("bn.bias") - get("bn.running_mean") * scale).astype(np.float32)}
  return params


def random_state(seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights of the real architecture, as PyTorch-named float32 tensors: He-scaled
  convolutions, batch-norm statistics near (0, 1). For tests and smoke runs; FID with
  them measures nothing."""
  gen = np.random.default_rng(seed)
  state = {}
  for key, shape in state_shapes().items():
    if key.endswith("conv.weight"):
      fan_in = int(np.prod(shape[1:]))
      value = gen.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif key.endswith(("bn.weight", "running_var")):
      value = gen.uniform(0.8, 1.2, shape)
    else:
      value = gen.normal(0.0, 0.1, shape)
    state[key] = value.astype(np.float32)
  return state


def load_weights(path) -> dict:
  """Params from ``path``: pytorch-fid's ``.pth`` (needs torch) or an ``.npz`` of the same
  tensors by name; local or ``gs://``. One-line errors for a missing or wrong file."""
  path = storage.as_path(path)
  if not path.is_file():
    raise InceptionWeightsError(f"no Inception weights file {path}: give the FID Inception "
                                "weights with --config.eval.fid.weights (docs/evaluation.md "
                                "says how to get them)")
  try:
    if path.suffix in (".pth", ".pt"):
      state = _read_torch(path)
    else:
      with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
          raise InceptionWeightsError(
              f"{path} is not an .npz archive (a zip of .npy arrays): give pytorch-fid's "
              ".pth or an .npz of its tensors (docs/evaluation.md)")
        f.seek(0)
        with np.load(f) as z:
          state = {k: z[k] for k in z.files}
  except InceptionWeightsError:
    raise
  except Exception as e:  # noqa: BLE001  (any unreadable file: one line naming it)
    raise InceptionWeightsError(f"cannot read Inception weights {path} ("
                                f"{storage.error_line(e)}): give pytorch-fid's .pth or an "
                                ".npz of its tensors") from None
  return params_from_state(state, str(path))


def _read_torch(path) -> dict:
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    raise InceptionWeightsError(
        f"reading {path} needs torch: pip install \"rgflow-jax[torch]\", or convert it "
        "once to .npz (docs/evaluation.md)") from None
  with path.open("rb") as f:
    state = torch.load(f, map_location="cpu", weights_only=True)
  return {k: v.numpy() for k, v in state.items()}


def cached_weights(cache_dir=None, url: str = WEIGHTS_URL) -> str:
  """The published weights in ``cache_dir`` (default ``~/.cache/rgflow_jax``), downloaded
  once and checked against the sha256 digits in the file name; returns the file's path."""
  cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".cache", "rgflow_jax"))
  name = url.rsplit("/", 1)[-1]
  target = os.path.join(cache_dir, name)
  if os.path.isfile(target):
    return target
  os.makedirs(cache_dir, exist_ok=True)
  digits = os.path.splitext(name)[0].rsplit("-", 1)[-1]
  fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
      shutil.copyfileobj(response, out)
    with open(tmp, "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()
    if not digest.startswith(digits):
      raise InceptionWeightsError(f"{url}: downloaded file has sha256 {digest[:12]}..., "
                                  f"expected {digits}...: not the published weights")
    os.replace(tmp, target)
  except OSError as e:
    raise InceptionWeightsError(f"cannot download the Inception weights from {url} "
                                f"({storage.error_line(e)}): download them by hand and "
                                "give --config.eval.fid.weights=PATH") from None
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return target


# --------------------------------------------------------------------- forward
def _apply(op, params, x):
  if isinstance(op, Fork):
    return jnp.concatenate([_apply(op.a, params, x), _apply(op.b, params, x)], axis=-1)
  if isinstance(op, Pool):
    window, strides = (1, op.size, op.size, 1), (1, op.stride, op.stride, 1)
    pad = ((0, 0), (op.pad, op.pad), (op.pad, op.pad), (0, 0))
    if op.kind == "max":
      return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pad)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    inside = jax.lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0,
                                   jax.lax.add, window, strides, pad)
    return total / inside
  p = params[op.name]
  y = jax.lax.conv_general_dilated(
      x, jnp.asarray(p["w"], x.dtype), (op.stride, op.stride),
      [(op.pad[0], op.pad[0]), (op.pad[1], op.pad[1])],
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
  return jax.nn.relu(y * p["scale"].astype(x.dtype) + p["shift"].astype(x.dtype))


def preprocess(images_uint8, dtype=jnp.float32):
  """uint8 (N, H, W, C), C = 1 or 3 -> (N, 299, 299, 3) in [-1, 1], as pytorch-fid."""
  x = jnp.asarray(images_uint8).astype(dtype) / 255.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (SIZE, SIZE):
    x = jax.image.resize(x, (x.shape[0], SIZE, SIZE, 3), "bilinear", antialias=False)
  return 2.0 * x - 1.0


def features(params, images_uint8, blocks: int | None = None, dtype=jnp.float32):
  """pool3 features (N, 2048) of uint8 images (N, H, W, 1 or 3), computed in ``dtype``.
  ``blocks``: stop after that many Inception blocks and return the feature map."""
  shape = tuple(getattr(images_uint8, "shape", ()))
  if len(shape) != 4 or shape[-1] not in (1, 3):
    raise ValueError(f"Inception features expect uint8 images (N, H, W, 1 or 3), got "
                     f"shape {shape}")
  return network(params, preprocess(images_uint8, dtype), blocks)


def network(params, x, blocks: int | None = None):
  """The network on preprocessed images x (N, 299, 299, 3) in [-1, 1], in x's dtype:
  pool3 features (N, 2048), or the feature map after ``blocks`` Inception blocks."""
  for op in STEM:
    x = _apply(op, params, x)
  for _, branches in BLOCKS[:blocks]:
    outs = []
    for branch in branches:
      y = x
      for op in branch:
        y = _apply(op, params, y)
      outs.append(y)
    x = jnp.concatenate(outs, axis=-1)
  return x if blocks is not None else jnp.mean(x, axis=(1, 2))
