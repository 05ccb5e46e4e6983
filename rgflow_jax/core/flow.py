"""What every flow of this package shares: densities, sampling, input checks, init and
parameter counts, the latents' level map.

A flow is a frozen dataclass of static structure (no parameters, no state) whose
methods are pure functions, params first. A subclass (:class:`rgflow_jax.RGFlow`,
:class:`rgflow_jax.RealNVP`) provides

- ``encode(params, x, execution=None)`` -> (z, log|det dz/dx|), image to latent, and
  ``decode(params, z, execution=None)`` -> (x, log|det dx/dz|), latent to image, with
  ``execution`` an :class:`rgflow_jax.core.execution.Execution` (how, never what);
- ``_init(rng, dtype)`` -> params (traced: :meth:`Flow.init` jits it);
- ``event_shape``, ``num_levels``, ``prior`` and, set in ``__post_init__``, the static
  ``_level_map`` (L, L): the level of the latents at each site.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax.core import pixels, priors


class Flow:
  """Base of the flows; see the module docstring."""

  # ------------------------------------------------------------- building
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

  @classmethod
  def from_config(cls, cfg):
    """Build from an ml_collections ConfigDict (or any mapping) of the fields."""
    return cls(**cls._config_fields(cfg))

  def init(self, rng, dtype=jnp.float32) -> dict:
    """Fresh parameters (one compiled program instead of hundreds of eager ops)."""
    return _jitted_init(self, rng, jnp.dtype(dtype))

  def num_params(self, params) -> int:
    return count_leaves(params)

  def count_params(self) -> int:
    """Parameter count of ``init``'s output, from shapes alone (nothing allocated)."""
    # The key is made inside the traced function: no backend starts (a config file
    # that sizes a model by its parameter count runs before jax.distributed starts).
    return count_leaves(jax.eval_shape(lambda: self._init(jax.random.PRNGKey(0),
                                                          jnp.float32)))

  # ------------------------------------------------------------- structure
  @property
  def num_dims(self) -> int:
    return int(np.prod(self.event_shape))

  def level_of_site(self) -> np.ndarray:
    """(L, L) int: the level of the latents at each site (all C channels share it)."""
    return self._level_map

  def latents_per_level(self) -> tuple[int, ...]:
    counts = np.bincount(self._level_map.reshape(-1), minlength=self.num_levels)
    return tuple(int(n) * self.event_shape[-1] for n in counts)

  def _check(self, x, what: str):
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[1:] != self.event_shape:
      raise ValueError(
          f"{what} expects an array of shape (batch, {', '.join(map(str, self.event_shape))}) "
          f"(NHWC), got {shape}")

  # ------------------------------------------------------------- densities
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

  def log_prob(self, params, y, execution=None):
    """Per-image log-density of flow-space images y (B, L, L, C)."""
    z, log_det = self.encode(params, y, execution)
    return self.prior_log_prob(z) + log_det

  def log_prob_pixels(self, params, x, execution=None):
    """Per-image log-density of images x in [0, 1] (B, L, L, C), pixel transform included."""
    y, ld_pix = pixels.to_flow(x)
    return self.log_prob(params, y, execution) + ld_pix

  def bits_per_dim(self, params, images_uint8, rng, execution=None):
    """Per-image bits per dimension of uint8 images, one dequantisation draw from rng."""
    self._check(images_uint8, "bits_per_dim")
    dtype = jax.tree.leaves(params)[0].dtype
    x = pixels.dequantize(rng, images_uint8, dtype)
    return pixels.bits_per_dim(self.log_prob_pixels(params, x, execution), self.num_dims)

  # -------------------------------------------------------------- sampling
  def sample_latents(self, rng, n: int, temperature=1.0, dtype=jnp.float32):
    """Prior draws (n, L, L, C), temperature a number or one per level."""
    t = self.temperature_map(temperature, dtype)
    return priors.sample(self.prior, rng, (n,) + self.event_shape, t, dtype)

  def sample(self, params, rng, n: int, temperature=1.0, execution=None):
    """n images in [0, 1] (B, L, L, C) drawn at the given temperature(s)."""
    dtype = jax.tree.leaves(params)[0].dtype
    z = self.sample_latents(rng, n, temperature, dtype)
    y, _ = self.decode(params, z, execution)
    return pixels.from_flow(y)


def count_leaves(tree) -> int:
  """The number of entries in a pytree of arrays (or of shapes)."""
  return int(sum(x.size for x in jax.tree.leaves(tree)))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_init(flow: Flow, rng, dtype):
  # The non-partitionable Threefry compiles each random call about 6x faster on CPU,
  # and an init program is little else; its values are replicated anyway.
  with jax.threefry_partitionable(False):
    return flow._init(rng, dtype)
