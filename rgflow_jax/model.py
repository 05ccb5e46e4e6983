"""RG-Flow: the hierarchical flow over the patch grid, as pure functions of params.

``RGFlow`` holds only static structure (shapes, per-level sizes, prior name); it has no
parameters and no state. Its methods are pure functions, params first:

    flow = RGFlow.from_config(config.model)
    params = flow.init(rng)
    z, log_det = flow.encode(params, y)      # flow space -> latent (RG direction)
    y, log_det = flow.decode(params, z)      # latent -> flow space (generation)
    bpd = flow.bits_per_dim(params, images_uint8, rng)
    images = flow.sample(params, rng, 16, temperature=0.8)

The latent ``z`` has the image's shape: site (i, j) holds the latent of level
``level_of_site()[i, j]`` (geometry.level_of_site: the level whose decimator
releases that site).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import conditioner, coupling, geometry, pixels, priors
from rgflow_jax.geometry import DECIMATOR, DISENTANGLER


def _per_level(name: str, value, num_levels: int) -> tuple[int, ...]:
  if isinstance(value, (int, np.integer)):
    values = (int(value),) * num_levels
  elif isinstance(value, Sequence):
    values = tuple(int(v) for v in value)
    if len(values) == 1:  # one value for every level
      values *= num_levels
  else:
    raise ValueError(f"{name} must be an int, or a list of 1 or {num_levels} ints, "
                     f"got {value!r}")
  if len(values) != num_levels:
    raise ValueError(f"{name} needs one value per level ({num_levels} levels), "
                     f"got {len(values)}: {values}")
  if min(values) < 1:
    raise ValueError(f"{name} must be >= 1 at every level, got {values}")
  return values


class FlowDensity:
  """Densities and sampling shared by every flow of this package.

  A subclass provides ``encode``/``decode`` (params first), ``event_shape``,
  ``num_dims``, ``num_levels``, ``prior`` and a static ``_level_map`` (L, L) of
  latent levels.
  """

  @classmethod
  def _config_fields(cls, cfg) -> dict:
    """A model config (ConfigDict or mapping) as dataclass fields; unknown keys fail."""
    cfg = dict(cfg)
    cfg.pop("name", None)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(cfg) - fields
    if unknown:
      raise ValueError(f"unknown {cls.__name__} config keys {sorted(unknown)}; "
                       f"valid keys: {sorted(fields)}")
    return cfg

  @property
  def num_dims(self) -> int:
    return int(np.prod(self.event_shape))

  def _check(self, x, what: str):
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[1:] != self.event_shape:
      raise ValueError(
          f"{what} expects an array of shape (batch, {', '.join(map(str, self.event_shape))}) "
          f"(NHWC), got {shape}")

  def temperature_map(self, temperature, dtype=jnp.float32):
    """A number, or one per level, -> a number or an (L, L, 1) map over latent sites."""
    t = jnp.asarray(temperature, dtype)
    if t.ndim == 0:
      return t
    if t.shape != (self.num_levels,):
      raise ValueError(f"temperature must be a number or one per level "
                       f"({self.num_levels} values), got shape {t.shape}")
    return t[self._level_map][..., None]

  def prior_log_prob(self, z, temperature=1.0):
    """Per-image log p(z) under the factorised prior."""
    t = self.temperature_map(temperature, z.dtype)
    lp = priors.log_density(self.prior, z, t)
    return lp.reshape(z.shape[0], -1).sum(axis=1)

  def log_prob(self, params, y):
    """Per-image log-density of flow-space images y (B, L, L, C)."""
    z, log_det = self.encode(params, y)
    return self.prior_log_prob(z) + log_det

  def log_prob_pixels(self, params, x):
    """Per-image log-density of images x in [0, 1] (B, L, L, C), pixel transform included."""
    y, ld_pix = pixels.to_flow(x)
    return self.log_prob(params, y) + ld_pix

  def bits_per_dim(self, params, images_uint8, rng):
    """Per-image bits per dimension of uint8 images, one dequantisation draw from rng."""
    self._check(images_uint8, "bits_per_dim")
    dtype = jax.tree.leaves(params)[0].dtype
    x = pixels.dequantize(rng, images_uint8, dtype)
    return pixels.bits_per_dim(self.log_prob_pixels(params, x), self.num_dims)

  def sample_latents(self, rng, n: int, temperature=1.0, dtype=jnp.float32):
    """Prior draws (n, L, L, C), temperature a number or one per level."""
    t = self.temperature_map(temperature, dtype)
    return priors.sample(self.prior, rng, (n,) + self.event_shape, t, dtype)

  def receptive_field(self, params, level: int, idx: int, rng=None, n_samples: int = 16):
    """(L, L) receptive field (eq. 14) of latent ``idx`` of ``level``, in the order of
    :func:`rgflow_jax.receptive.latents_of_level`; see :mod:`rgflow_jax.receptive`."""
    from rgflow_jax import receptive  # noqa: PLC0415  (receptive works on any flow)
    return receptive.receptive_field_by_index(self, params, level, idx, rng, n_samples)

  def sample(self, params, rng, n: int, temperature=1.0):
    """n images in [0, 1] (B, L, L, C) drawn at the given temperature(s)."""
    dtype = jax.tree.leaves(params)[0].dtype
    z = self.sample_latents(rng, n, temperature, dtype)
    y, _ = self.decode(params, z)
    return pixels.from_flow(y)


@dataclasses.dataclass(frozen=True)
class RGFlow(FlowDensity):
  """Static description of an RG-Flow model; see the module docstring."""

  image_size: int = 32
  channels: int = 3
  block_size: int = 4
  n_layers: tuple[int, ...] | int = 4
  n_res: tuple[int, ...] | int = 4
  hidden: tuple[int, ...] | int = 512
  mlp_depth: tuple[int, ...] | int = 2
  share_levels: bool = False
  prior: str = "laplace"
  # Which layer of a level is shifted by half a block: "paper" (eqs. 6-9: the
  # disentangler) or "authors" (their code: the decimator); see rgflow_jax.geometry.
  layer_order: str = "paper"
  remat: bool = False
  # Blocks with at least this many RNVP layers run them as one lax.scan (compile time
  # flat in n_layer); shorter ones are unrolled, which XLA:CPU runs faster. 1: always
  # scan; a large number: never.
  scan_min_layers: int = 5
  matmul_dtype: str = "float32"  # "bfloat16": bf16 matmul inputs, f32 everything else
  # encode's conditioners get a hand-written backward pass (coupling._mlp_bwd): faster
  # gradients, no forward-mode derivatives through encode. None: on in the training
  # step (training.make_train_step, make_loop_step), off elsewhere; True / False: always / never.
  hand_backward: bool | None = None

  def __post_init__(self):
    if not isinstance(self.scan_min_layers, (int, np.integer)) or self.scan_min_layers < 1:
      raise ValueError(f"scan_min_layers must be an int >= 1, got {self.scan_min_layers!r}")
    if self.hand_backward not in (None, True, False):
      raise ValueError(f"hand_backward must be true, false or None (auto), "
                       f"got {self.hand_backward!r}")
    if self.matmul_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"matmul_dtype must be 'float32' or 'bfloat16', "
                       f"got {self.matmul_dtype!r}")
    object.__setattr__(self, "_matmul_dtype",
                       None if self.matmul_dtype == "float32" else jnp.bfloat16)
    geo = geometry.Geometry(self.image_size, self.channels, self.block_size,
                            self.layer_order)
    object.__setattr__(self, "geometry", geo)
    for name in ("n_layers", "n_res", "hidden", "mlp_depth"):
      object.__setattr__(self, name,
                         _per_level(name, getattr(self, name), geo.num_levels))
    priors.check_prior(self.prior)
    if self.share_levels and len(set(self.level_specs())) > 1:
      raise ValueError("share_levels=True needs the same n_layers, n_res, hidden "
                       f"and mlp_depth at every level, got {self.level_specs()}")
    # Static per-site level map, computed once, closed over by jit.
    object.__setattr__(self, "_level_map", geo.level_of_site())

  @classmethod
  def from_config(cls, cfg) -> "RGFlow":
    """Build from an ml_collections ConfigDict (or any mapping) of the fields above."""
    cfg = cls._config_fields(cfg)
    for key in ("n_layers", "n_res", "hidden", "mlp_depth"):
      if key in cfg and not isinstance(cfg[key], (int, np.integer)):
        cfg[key] = tuple(cfg[key])
    return cls(**cfg)

  # ---------------------------------------------------------------- structure
  @property
  def num_levels(self) -> int:
    return self.geometry.num_levels

  @property
  def event_shape(self) -> tuple[int, int, int]:
    return self.geometry.event_shape

  def level_specs(self) -> tuple[tuple[int, int, int, int], ...]:
    """(n_layer, n_res, hidden, mlp_depth) for each level."""
    return tuple(zip(self.n_layers, self.n_res, self.hidden, self.mlp_depth, strict=True))

  def level_of_site(self) -> np.ndarray:
    return self._level_map

  def latents_per_level(self) -> tuple[int, ...]:
    return self.geometry.latents_per_level()

  def _param_key(self, level: int) -> str:
    return "shared" if self.share_levels else f"level{level}"

  # -------------------------------------------------------------------- init
  def init(self, rng, dtype=jnp.float32) -> dict:
    """Parameters: {'level<h>' or 'shared': {'dis': block, 'dec': block}}."""
    return _jitted_init(self, rng, jnp.dtype(dtype))

  def _init(self, rng, dtype) -> dict:
    dim = self.geometry.patch_dim
    levels = [0] if self.share_levels else range(self.num_levels)
    params = {}
    for h in levels:
      n_layer, n_res, hidden, depth = self.level_specs()[h]
      k_dis, k_dec = jax.random.split(jax.random.fold_in(rng, h))
      params[self._param_key(h)] = {
          DISENTANGLER: coupling.init_block(k_dis, n_layer, dim, hidden, depth,
                                            n_res, dtype),
          DECIMATOR: coupling.init_block(k_dec, n_layer, dim, hidden, depth,
                                         n_res, dtype),
      }
    return params

  def num_params(self, params) -> int:
    return conditioner.count_params(params)

  def count_params(self) -> int:
    """Parameter count of ``init``'s output, from shapes alone (nothing allocated)."""
    # The key is made inside the traced function: no backend starts (a config file
    # that sizes a model by its parameter count runs before jax.distributed starts).
    shapes = jax.eval_shape(lambda: self._init(jax.random.PRNGKey(0), dtype=jnp.float32))
    return conditioner.count_params(shapes)

  # ----------------------------------------------------------- layer helpers
  def _apply_layer(self, block_params, x, layer, inverse):
    """Apply one layer's bijector to every block of sub-lattice x (B, M, M, C)."""
    shift = self.geometry.shift(layer)
    blocks = geometry.to_blocks(x, self.block_size, shift)
    b, nb = blocks.shape[:2]
    n_layer = block_params["scale"].shape[0]
    out, log_det = coupling.apply_blocks(
        block_params, blocks.reshape((b * nb,) + blocks.shape[2:]), inverse=inverse,
        remat=self.remat, scan=n_layer >= self.scan_min_layers,
        matmul_dtype=self._matmul_dtype,
        hand_backward=not inverse and self.hand_backward is True)
    out = geometry.from_blocks(out.reshape(blocks.shape), shift)
    return out, log_det.reshape(b, nb).sum(axis=1)

  # -------------------------------------------------------------- directions
  def encode(self, params, x):
    """RG direction R: flow-space image (B, L, L, C) -> (latent z, log|det dz/dx|)."""
    self._check(x, "encode")
    x = jnp.asarray(x)
    log_det = jnp.zeros(x.shape[0], x.dtype)
    outputs = []
    for h in range(self.num_levels):
      p = params[self._param_key(h)]
      x, ld_dis = self._apply_layer(p[DISENTANGLER], x, DISENTANGLER, False)
      x, ld_dec = self._apply_layer(p[DECIMATOR], x, DECIMATOR, False)
      log_det = log_det + ld_dis + ld_dec
      outputs.append(x)
      x = geometry.coarse_sites(x)
    z = outputs[-1]
    for y in reversed(outputs[:-1]):
      z = geometry.with_coarse_sites(y, z)
    return z, log_det

  def decode(self, params, z):
    """Generation G = R^-1: latent z (B, L, L, C) -> (image x, log|det dx/dz|)."""
    self._check(z, "decode")
    z = jnp.asarray(z)
    per_level = [z]
    for _ in range(self.num_levels - 1):
      per_level.append(geometry.coarse_sites(per_level[-1]))
    log_det = jnp.zeros(z.shape[0], z.dtype)
    x = None
    for h in reversed(range(self.num_levels)):
      p = params[self._param_key(h)]
      y = per_level[h] if x is None else geometry.with_coarse_sites(per_level[h], x)
      y, ld_dec = self._apply_layer(p[DECIMATOR], y, DECIMATOR, True)
      x, ld_dis = self._apply_layer(p[DISENTANGLER], y, DISENTANGLER, True)
      log_det = log_det + ld_dec + ld_dis
    return x, log_det


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_init(flow: RGFlow, rng, dtype):
  # One compiled program instead of hundreds of eager random/norm ops.
  return flow._init(rng, dtype)


def init(rng, config, dtype=jnp.float32):
  """Convenience: ``(flow, params)`` from a model config."""
  flow = RGFlow.from_config(config)
  return flow, flow.init(rng, dtype)
