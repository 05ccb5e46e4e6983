"""RG-Flow: the hierarchical flow over the patch grid, as pure functions of params.

``RGFlow`` holds only static structure (shapes, per-level sizes, prior name); it has no
parameters and no state. Its methods are pure functions, params first (the package's
functional API, ``rgflow_jax.encode(params, y)`` with params bound to their flow,
:mod:`rgflow_jax.core.bound`, calls these):

    flow = RGFlow.from_config(config.model)
    params = flow.init(rng)
    z, log_det = flow.encode(params, y)      # flow space -> latent (RG direction)
    y, log_det = flow.decode(params, z)      # latent -> flow space (generation)
    bpd = flow.bits_per_dim(params, images_uint8, rng)
    images = flow.sample(params, rng, 16, temperature=0.8)

Each of them takes an optional ``execution`` (:class:`rgflow_jax.core.execution.Execution`:
scan, remat, bfloat16 matmuls, the hand-written backward pass): how the arithmetic is
arranged, never what it computes. Densities, sampling and init come from
:class:`rgflow_jax.core.flow.Flow`; one RNVP block is defined in :mod:`rgflow_jax.core.coupling`.

The latent ``z`` has the image's shape: site (i, j) holds the latent of level
``level_of_site()[i, j]`` (geometry.level_of_site: the level whose decimator
releases that site).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import bound, coupling, coupling_fast, geometry, priors
from rgflow_jax.core.execution import DEFAULT
from rgflow_jax.core.flow import Flow
from rgflow_jax.core.geometry import DECIMATOR, DISENTANGLER, LAYERS


@dataclasses.dataclass(frozen=True)
class Stage:
  """One layer of one level: its blocks are shifted by ``shift`` sites and its
  parameters are ``params[param_key][layer]``."""

  level: int
  layer: str  # geometry.DISENTANGLER or geometry.DECIMATOR
  shift: int
  param_key: str

  @property
  def ends_level(self) -> bool:
    """Whether this stage ends its level in the RG direction: the decimator, whose
    output's sites other than the ``::2`` ones are that level's latents (in decode,
    the stage where the level's latents join the level above's)."""
    return self.layer == DECIMATOR


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


@dataclasses.dataclass(frozen=True)
class RGFlow(Flow):
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
  # disentangler) or "authors" (their code: the decimator); see rgflow_jax.core.geometry.
  layer_order: str = "paper"

  def __post_init__(self):
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

  def _param_key(self, level: int) -> str:
    return "shared" if self.share_levels else f"level{level}"

  def stages(self, inverse: bool = False) -> tuple[Stage, ...]:
    """The RG sweep as data: every layer of every level in the order ``encode`` runs
    them (level 0 first; within a level the disentangler, then the decimator), or, with
    ``inverse``, the order ``decode`` runs them (the exact reverse). The one schedule
    that encode, decode, local inference and the authors' layer names follow."""
    out = tuple(Stage(h, layer, self.geometry.shift(layer), self._param_key(h))
                for h in range(self.num_levels) for layer in LAYERS)
    return out[::-1] if inverse else out

  # -------------------------------------------------------------------- init
  def _init(self, rng, dtype) -> dict:
    """Parameters: {'level<h>' or 'shared': {'dis': block, 'dec': block}}."""
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

  # ----------------------------------------------------------- one stage
  def apply_stage(self, params, stage: Stage, x, inverse: bool, execution=None):
    """One stage's bijector on every block of the level's sub-lattice x (B, E, E, C):
    one RNVP block (coupling.encode_block / decode_block) batched over the patch grid.
    Returns (y of x's shape, per-block log|det| (B, blocks)). Its operations carry the
    name scope ``level<h>/<layer>`` (profiles group by it)."""
    with jax.named_scope(f"level{stage.level}/{stage.layer}"):
      blocks = geometry.to_blocks(x, self.block_size, stage.shift)
      b, nb = blocks.shape[:2]
      out, log_det = coupling_fast.apply_blocks(
          params[stage.param_key][stage.layer], blocks.reshape((b * nb,) + blocks.shape[2:]),
          inverse=inverse, execution=execution or DEFAULT)
      out = geometry.from_blocks(out.reshape(blocks.shape), stage.shift)
    return out, log_det.reshape(b, nb)

  # -------------------------------------------------------------- directions
  def encode(self, params, x, execution=None):
    """RG direction R: flow-space image (B, L, L, C) -> (latent z, log|det dz/dx|)."""
    z, log_det, _ = self.encode_stages(params, x, execution)
    return z, log_det

  def encode_stages(self, params, x, execution=None):
    """``encode``, also returning each stage's input (B, E*E, C) on its level's
    sub-lattice and per-block log|det| (B, blocks), in ``stages()`` order (what local
    inference caches of a baseline image)."""
    params = bound.tree_of(params)
    self._check(x, "encode")
    x = jnp.asarray(x)
    log_det = jnp.zeros(x.shape[0], x.dtype)
    frozen, kept = [], []
    for stage in self.stages():
      b, e, _, c = x.shape
      x_in = x
      x, ld = self.apply_stage(params, stage, x, False, execution)
      kept.append((x_in.reshape(b, e * e, c), ld))
      log_det = log_det + ld.sum(axis=1)
      if stage.ends_level:  # its latents stay, the rest go on
        frozen.append(x)
        x = geometry.coarse_sites(x)
    z = frozen[-1]
    for y in reversed(frozen[:-1]):
      z = geometry.with_coarse_sites(y, z)
    return z, log_det, kept

  def decode(self, params, z, execution=None):
    """Generation G = R^-1: latent z (B, L, L, C) -> (image x, log|det dx/dz|)."""
    x, log_det, _ = self.decode_stages(params, z, execution)
    return x, log_det

  def decode_stages(self, params, z, execution=None):
    """``decode``, also returning each stage's input (B, E*E, C) in ``stages(inverse=
    True)`` order (what latent edits cache)."""
    params = bound.tree_of(params)
    self._check(z, "decode")
    z = jnp.asarray(z)
    per_level = [z]
    for _ in range(self.num_levels - 1):
      per_level.append(geometry.coarse_sites(per_level[-1]))
    log_det = jnp.zeros(z.shape[0], z.dtype)
    x, kept = None, []
    for stage in self.stages(inverse=True):
      if stage.ends_level:  # decoding, a level starts: its latents join the level above's
        h = stage.level
        x = per_level[h] if x is None else geometry.with_coarse_sites(per_level[h], x)
      b, e, _, c = x.shape
      kept.append(x.reshape(b, e * e, c))
      x, ld = self.apply_stage(params, stage, x, True, execution)
      log_det = log_det + ld.sum(axis=1)
    return x, log_det, kept


def init(rng, config, dtype=jnp.float32):
  """Convenience: ``(flow, params)`` from a model config."""
  flow = RGFlow.from_config(config)
  return flow, flow.init(rng, dtype)
