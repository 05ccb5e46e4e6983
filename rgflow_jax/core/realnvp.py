"""Multi-scale Real NVP (Dinh et al. 2017), the paper's globally connected baseline.

Same API as :class:`rgflow_jax.RGFlow` (init / encode / decode / log_prob /
bits_per_dim / sample, the same priors and pixel transform), so training, receptive
fields, mixing and inpainting run on it unchanged. At each scale s < S - 1:

    n_checker checkerboard affine couplings  (alternating parity)
    squeeze  (H, W, C) -> (H/2, W/2, 4C), channels ordered (di, dj, c)
    n_channel channel-wise affine couplings  (alternating halves)
    factor out the first half of the channels (the di = 0 rows) as latents of level s

and at the last scale n_checker + 1 checkerboard couplings. Each coupling's s and t
come from one convolutional residual network (3 x 3 convolutions, weight-normalised,
swish; its output convolution starts at zero, so the flow is the identity at init);
s = scale * tanh(.). The latent ``z`` has the image's shape: un-squeezing the
factored-out halves puts every latent back on an image site, and because the halves
split by position (di), all C latents of a site belong to one level, read from
``level_of_site()`` as for RG-Flow (level 0: the even rows, half the sites; level 1:
rows 1 mod 4; level 2: rows 3 mod 8; ...; the top level: the last scale's sites).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import bound, conditioner, priors
from rgflow_jax.core.execution import DEFAULT
from rgflow_jax.core.flow import Flow

_DIMS = ("NHWC", "HWIO", "NHWC")


# ------------------------------------------------------------- reshaping
def squeeze(x):
  """(B, H, W, C) -> (B, H/2, W/2, 4C), channel order (di, dj, c)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x):
  """Inverse of :func:`squeeze`."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


# ------------------------------------------------------------ conditioner
def _conv_init(rng, c_in, c_out, dtype, zero=False):
  if zero:
    return {"w": jnp.zeros((3, 3, c_in, c_out), dtype), "b": jnp.zeros((c_out,), dtype)}
  v, g = conditioner.init_weight_norm(rng, (3, 3, c_in, c_out), 9 * c_in, dtype,
                                      in_axes=_CONV_IN_AXES)
  return {"v": v, "g": g, "b": jnp.zeros((c_out,), dtype)}


_CONV_IN_AXES = (0, 1, 2)  # a 3 x 3 x c_in x c_out kernel's inputs


def _conv(p, x):
  if "v" in p:  # weight norm: w = g v / |v| per output feature
    w = conditioner.weight_norm(p["v"], p["g"], _CONV_IN_AXES)
  else:
    w = p["w"]
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DIMS) + p["b"]


def _net_init(rng, c_in, c_out, hidden, n_res, dtype):
  keys = jax.random.split(rng, 2 + 2 * n_res)
  return {
      "in": _conv_init(keys[0], c_in, hidden, dtype),
      "res": [{"a": _conv_init(keys[2 + 2 * r], hidden, hidden, dtype),
               "b": _conv_init(keys[3 + 2 * r], hidden, hidden, dtype)}
              for r in range(n_res)],
      "out": _conv_init(keys[1], hidden, 2 * c_out, dtype, zero=True),
      "scale": jnp.ones((c_out,), dtype),
  }


def _net_apply(p, x):
  """(s, t) for the coupled half, each (B, H, W, c_out)."""
  h = _conv(p["in"], x)
  for r in p["res"]:
    h = (h + _conv(r["b"], jax.nn.silu(_conv(r["a"], jax.nn.silu(h))))) * (1 / np.sqrt(2))
  out = _conv(p["out"], jax.nn.silu(h))
  s, t = jnp.split(out, 2, axis=-1)
  return p["scale"] * jnp.tanh(s), t


# --------------------------------------------------------------- couplings
def _checker_mask(h, w, parity, dtype):
  i, j = np.indices((h, w))
  return jnp.asarray(((i + j) % 2 == parity)[None, :, :, None], dtype)


def _checker(p, x, parity, inverse):
  """Checkerboard coupling: sites with (i + j) % 2 == parity condition the others."""
  mask = _checker_mask(x.shape[1], x.shape[2], parity, x.dtype)
  cond = x * mask
  inp = jnp.concatenate([cond, jnp.broadcast_to(mask, x.shape[:3] + (1,))], axis=-1)
  s, t = _net_apply(p, inp)
  s, t = s * (1 - mask), t * (1 - mask)
  y = (x - t) * jnp.exp(-s) if inverse else x * jnp.exp(s) + t
  ld = jnp.sum(s, axis=(1, 2, 3))
  return y, -ld if inverse else ld


def _channel(p, x, flip, inverse):
  """Channel coupling: one half of the channels conditions the other."""
  a, b = jnp.split(x, 2, axis=-1)
  if flip:
    a, b = b, a
  s, t = _net_apply(p, a)
  b = (b - t) * jnp.exp(-s) if inverse else b * jnp.exp(s) + t
  ld = jnp.sum(s, axis=(1, 2, 3))
  out = jnp.concatenate([b, a] if flip else [a, b], axis=-1)
  return out, -ld if inverse else ld


# ------------------------------------------------------------------ model
@dataclasses.dataclass(frozen=True)
class RealNVP(Flow):
  """Static description of a multi-scale Real NVP; see the module docstring.

  ``target_params`` > 0 picks ``hidden`` (the conditioners' feature count) so that
  the parameter count comes closest to it, e.g. an RG-Flow's count.
  """

  image_size: int = 32
  channels: int = 3
  num_scales: int = 4
  hidden: int = 64
  n_res: int = 2
  n_checker: int = 3
  n_channel: int = 3
  prior: str = "laplace"
  target_params: int = 0

  def __post_init__(self):
    L, S = self.image_size, self.num_scales
    if S < 1 or L % (1 << (S - 1)) or L >> (S - 1) < 2:
      raise ValueError(f"Real NVP with num_scales={S} needs image_size divisible by "
                       f"{1 << max(S - 1, 0)} with at least 2 x 2 sites left at the last "
                       f"scale; got image_size={L}")
    for name in ("channels", "hidden", "n_checker", "n_channel"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.n_res < 0:
      raise ValueError(f"n_res must be >= 0, got {self.n_res}")
    priors.check_prior(self.prior)
    if self.target_params:
      object.__setattr__(self, "hidden", self._width_for(self.target_params))
    object.__setattr__(self, "_level_map", self._levels())

  # ---------------------------------------------------------------- structure
  @property
  def num_levels(self) -> int:
    return self.num_scales

  @property
  def event_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, self.channels)

  def _levels(self) -> np.ndarray:
    L, S = self.image_size, self.num_scales
    edge = L >> (S - 1)
    z = np.full((1, edge, edge, self.channels << (2 * (S - 1))), S - 1.0)
    for s in reversed(range(S - 1)):
      z = np.asarray(unsqueeze(np.concatenate([np.full_like(z, s), z], axis=-1)))
    assert (z == z[..., :1]).all()  # every channel of a site shares its level
    return z[0, :, :, 0].astype(np.int32)

  def _scale_channels(self, s: int) -> int:
    """Channels entering scale s (before its squeeze)."""
    return self.channels * (2 ** s)

  def params_for_width(self, h: int) -> int:
    """Parameter count of this architecture with conditioners of width ``h``."""
    conv = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out  # v, g, b
    def net(c_in, c_out):
      return (conv(c_in, h) + 2 * self.n_res * conv(h, h)
              + 9 * h * 2 * c_out + 2 * c_out + c_out)  # zero-init out conv, scale
    total = 0
    for s in range(self.num_scales):
      c = self._scale_channels(s)
      last = s == self.num_scales - 1
      total += (self.n_checker + last) * net(c + 1, c)
      if not last:
        total += self.n_channel * net(2 * c, 2 * c)
    return total

  def _width_for(self, target: int) -> int:
    """The width whose parameter count is closest to ``target``."""
    lo, hi = 1, 2
    while self.params_for_width(hi) < target:
      lo, hi = hi, 2 * hi
    while hi - lo > 1:
      mid = (lo + hi) // 2
      lo, hi = (mid, hi) if self.params_for_width(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: abs(self.params_for_width(h) - target))

  # -------------------------------------------------------------------- init
  def _init(self, rng, dtype) -> dict:
    """{'scale<s>': {'checker': [nets], 'channel': [nets]}}."""
    params = {}
    for s in range(self.num_scales):
      c = self._scale_channels(s)
      last = s == self.num_scales - 1
      n_checker = self.n_checker + (1 if last else 0)
      keys = jax.random.split(jax.random.fold_in(rng, s), n_checker + self.n_channel)
      scale = {"checker": [_net_init(keys[k], c + 1, c, self.hidden, self.n_res, dtype)
                           for k in range(n_checker)]}
      if not last:
        scale["channel"] = [_net_init(keys[n_checker + k], 2 * c, 2 * c, self.hidden,
                                      self.n_res, dtype) for k in range(self.n_channel)]
      params[f"scale{s}"] = scale
    return params

  @staticmethod
  def _couplings(execution):
    """The two coupling functions, rematerialised if ``execution.remat``."""
    remat = (execution or DEFAULT).remat
    return tuple(jax.checkpoint(fn, static_argnums=(2, 3)) if remat else fn
                 for fn in (_checker, _channel))

  # -------------------------------------------------------------- directions
  def encode(self, params, x, execution=None):
    """Image (flow space) -> (latent z of the image's shape, log|det dz/dx|)."""
    params = bound.tree_of(params)
    self._check(x, "encode")
    x = jnp.asarray(x)
    checker, channel = self._couplings(execution)
    log_det = jnp.zeros(x.shape[0], x.dtype)
    factored = []
    for s in range(self.num_scales):
      p = params[f"scale{s}"]
      for k, net in enumerate(p["checker"]):
        x, ld = checker(net, x, k % 2, False)
        log_det = log_det + ld
      if s == self.num_scales - 1:
        break
      x = squeeze(x)
      for k, net in enumerate(p["channel"]):
        x, ld = channel(net, x, k % 2, False)
        log_det = log_det + ld
      z_s, x = jnp.split(x, 2, axis=-1)
      factored.append(z_s)
    z = x
    for z_s in reversed(factored):
      z = unsqueeze(jnp.concatenate([z_s, z], axis=-1))
    return z, log_det

  def decode(self, params, z, execution=None):
    """Latent z -> (image in flow space, log|det dx/dz|)."""
    params = bound.tree_of(params)
    self._check(z, "decode")
    z = jnp.asarray(z)
    checker, channel = self._couplings(execution)
    factored, x = [], z
    for _ in range(self.num_scales - 1):
      z_s, x = jnp.split(squeeze(x), 2, axis=-1)
      factored.append(z_s)
    log_det = jnp.zeros(z.shape[0], z.dtype)
    for s in reversed(range(self.num_scales)):
      p = params[f"scale{s}"]
      if s < self.num_scales - 1:
        x = jnp.concatenate([factored[s], x], axis=-1)
        for k in reversed(range(len(p["channel"]))):
          x, ld = channel(p["channel"][k], x, k % 2, True)
          log_det = log_det + ld
        x = unsqueeze(x)
      for k in reversed(range(len(p["checker"]))):
        x, ld = checker(p["checker"][k], x, k % 2, True)
        log_det = log_det + ld
    return x, log_det
