"""The engine: RG-Flow's stages run on the blocks of a cone only.

- :func:`decode_region`: the generated pixels of a region from its cone's latents;
- :func:`delta_log_prob`: log p(x) - log p(baseline) for images that differ from a
  baseline only inside the region, from the baseline's stage inputs and per-block
  log-dets cached once (:func:`cache_baseline`);
- :func:`edit_latents`: a decoded image after a change of the latents in a box, from
  the decode's stage inputs cached once (:func:`cache_decode`).

Each stage gathers its blocks' inputs (new values where the cone's tables say so, the
cache's elsewhere) and runs them through the same batched RNVP block as the full model
(:func:`rgflow_jax.core.coupling_fast.apply_prepared`).

One argument type each: the two caches run the whole flow and take its parameters; the
functions on a cone take a :class:`Prepared` (:func:`prepare`: weight norm and
checkerboard order done once, with the execution they were done for, so that loops
calling them many times with the same parameters do not redo it).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rgflow_jax.core import bound, coupling_fast, pixels, priors
from rgflow_jax.core.execution import DEFAULT, Execution
from rgflow_jax.core.local.cone import Cone


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Every stage's block parameters through coupling_fast.prepare, keyed (level, layer),
  and the execution they were prepared for (static)."""

  blocks: dict
  execution: Execution = DEFAULT


jax.tree_util.register_dataclass(Prepared, data_fields=["blocks"], meta_fields=["execution"])


@dataclasses.dataclass(frozen=True)
class StageBaseline:
  """One stage of a :class:`BaselineCache`: the baseline's inputs at the cone's block
  sites (1, P, k*k, C), its per-block log-dets (1, P) and, where the stage ends a level,
  its latents there (1, P, k*k, C)."""

  inputs: jax.Array
  log_dets: jax.Array
  latents: jax.Array


@dataclasses.dataclass(frozen=True)
class BaselineCache:
  """What :func:`delta_log_prob` reads of the baseline image (:func:`cache_baseline`):
  its pixels in the box (1, H*W, C), a :class:`StageBaseline` per stage, and its
  log-density (1,)."""

  pixels: jax.Array
  stages: tuple
  log_prob: jax.Array


@dataclasses.dataclass(frozen=True)
class DecodeCache:
  """What :func:`edit_latents` reads of a decode (:func:`cache_decode`): each stage's
  inputs at the cone's block sites, and the decoded image (B, L, L, C) in flow space."""

  inputs: tuple
  image: jax.Array


jax.tree_util.register_dataclass(StageBaseline, data_fields=["inputs", "log_dets", "latents"],
                                 meta_fields=[])
jax.tree_util.register_dataclass(BaselineCache, data_fields=["pixels", "stages", "log_prob"],
                                 meta_fields=[])
jax.tree_util.register_dataclass(DecodeCache, data_fields=["inputs", "image"], meta_fields=[])


def prepare(flow, params, execution=None) -> Prepared:
  """The flow's parameters (a tree or a BoundParams) as the functions on a cone take
  them, for ``execution`` (default: DEFAULT)."""
  if isinstance(params, Prepared):
    raise TypeError("these parameters are prepared already: pass them on as they are")
  execution = execution or DEFAULT
  params = bound.tree_of(params)
  return Prepared({(st.level, st.layer): coupling_fast.prepare(
      params[st.param_key][st.layer], flow.block_size, flow.channels, execution)
      for st in flow.stages()}, execution)


def _check_prepared(prepared) -> Prepared:
  if not isinstance(prepared, Prepared):
    raise TypeError(f"the functions on a cone take prepared parameters, not a "
                    f"{type(prepared).__name__}: pass local.prepare(flow, params), made once")
  return prepared


def _run(flow, prepared: Prepared, plan_stage, inputs, inverse: bool):
  """inputs (B, P, k*k, C) -> (outputs of the same shape, per-block log-dets (B, P))."""
  b, p, kk, c = inputs.shape
  k = flow.block_size
  out, ld = coupling_fast.apply_prepared(prepared.blocks[plan_stage.level, plan_stage.layer],
                                         inputs.reshape(b * p, k, k, c), inverse=inverse,
                                         execution=prepared.execution)
  return out.reshape(b, p, kk, c), ld.reshape(b, p)


def _gather(values, index):
  """values (B, N, C), index (...) -> (B, ..., C)."""
  return jnp.take(values, jnp.asarray(index), axis=1)


def _where(mask, new, old):
  return jnp.where(jnp.asarray(mask)[None, :, :, None], new, old)


@functools.partial(jax.jit, static_argnums=(0, 4))
def cache_baseline(flow, params, cone: Cone, baseline_pixels, execution=None):
  """What :func:`delta_log_prob` needs of the baseline image (1, L, L, C) in [0, 1]:
  each stage's baseline inputs at its block sites, its per-block log-dets and latents,
  the baseline's pixels in the box, and its log-density (``log_prob``, per image, as
  ``flow.log_prob_pixels``), as a :class:`BaselineCache`. Computed once, at full size."""
  x = jnp.asarray(baseline_pixels)
  y, ld_pixels = pixels.to_flow(x)
  z, log_det, kept = flow.encode_stages(params, y, execution)
  z_flat = z.reshape(1, -1, flow.channels)
  stages = tuple(StageBaseline(_gather(x_in, tab.sites),
                               jnp.take(ld, jnp.asarray(tab.ids), axis=1),
                               _gather(z_flat, tab.image_sites))
                 for (x_in, ld), tab in zip(kept, cone.stages, strict=True))
  return BaselineCache(_gather(x.reshape(1, -1, flow.channels), cone.pixels), stages,
                       flow.prior_log_prob(z) + ld_pixels + log_det)


def _pixel_log_det(x):
  """log|det| of the pixel transform at pixels x (B, N, C) in [0, 1], per image."""
  return pixels.to_flow(x[:, :, None, :])[1]


def delta_log_prob(flow, prepared: Prepared, cone: Cone, cache: BaselineCache, new_pixels):
  """log p(x) - log p(baseline) per image, for images x equal to the baseline outside
  the box and ``new_pixels`` (B, H*W, C) in [0, 1] (row-major over the box) inside
  it; from the blocks of the box's inference cone only."""
  prepared = _check_prepared(prepared)
  b = new_pixels.shape[0]
  prev = pixels.to_flow(new_pixels[:, :, None, :])[0][:, :, 0, :]
  delta = _pixel_log_det(new_pixels) - _pixel_log_det(cache.pixels)
  for st, tab, base in zip(cone.plan.stages, cone.stages, cache.stages, strict=True):
    inputs = _where(tab.use_new, _gather(prev, tab.src), base.inputs)
    out, ld = _run(flow, prepared, st, inputs, False)
    delta = delta + jnp.sum((ld - base.log_dets) * jnp.asarray(tab.real, out.dtype),
                            axis=1)
    if st.ends_level:
      w = jnp.asarray(tab.holds_latent & tab.real[:, None], out.dtype)
      lp = priors.log_density(flow.prior, out, 1.0) - \
          priors.log_density(flow.prior, base.latents, 1.0)
      delta = delta + jnp.sum(lp * w[None, :, :, None], axis=(1, 2, 3))
    prev = out.reshape(b, -1, out.shape[-1])
  return delta


def cone_latents(cone: Cone, z):
  """The latents of an inference cone (B, n_cone, C), in the order of
  ``cone.cone_sites`` (padding: zeros), from a latent z (B, L, L, C)."""
  b, L, _, c = z.shape
  return jnp.take(z.reshape(b, L * L, c), jnp.asarray(cone.cone_sites), axis=1,
                  mode="fill", fill_value=0)


def with_cone_latents(cone: Cone, z, values):
  """z (B, L, L, C) with its cone latents replaced by ``values`` (B, n_cone, C)."""
  b, L, _, c = z.shape
  flat = z.reshape(b, L * L, c).at[:, jnp.asarray(cone.cone_sites)].set(values, mode="drop")
  return flat.reshape(z.shape)


def decode_region(flow, prepared: Prepared, cone: Cone, latents):
  """The generated pixels (B, H*W, C) in flow space (row-major over the box) of the
  cone latents ``latents`` (B, n_cone, C) (:func:`cone_latents`), from the blocks the
  box depends on only; equal to ``flow.decode``'s there. (The box's pixels depend on
  no other latent.)"""
  prepared = _check_prepared(prepared)
  b = latents.shape[0]
  prev = None
  for st, tab in zip(reversed(cone.plan.stages), reversed(cone.stages)):
    if st.ends_level:
      z = _gather(latents, tab.latent_slot)
      inputs = z if prev is None else _where(tab.holds_latent, z,
                                             _gather(prev, tab.src_decode))
    else:
      inputs = _gather(prev, tab.src_decode)
    out, _ = _run(flow, prepared, st, inputs, True)
    prev = out.reshape(b, -1, out.shape[-1])
  return _gather(prev, cone.pixels_from_decode)


def cache_decode(flow, params, cone: Cone, z, execution=None):
  """What :func:`edit_latents` needs of the decode of z (B, L, L, C): each stage's
  inputs at its block sites, and the decoded image (flow space): a :class:`DecodeCache`.
  Two programs: the decode, one per flow whatever the cone, and the gathers, one per
  plan (so cones of several plans cost one decode's compilation, not one each)."""
  image, _, kept = _decode_stages(flow, params, z, execution)
  return DecodeCache(_at_block_sites(kept, cone), image)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _decode_stages(flow, params, z, execution=None):
  return flow.decode_stages(params, z, execution)


@jax.jit
def _at_block_sites(kept, cone: Cone):
  return tuple(_gather(x, tab.sites) for x, tab in zip(kept, cone.stages, strict=True))


def edit_latents(flow, prepared: Prepared, cone: Cone, cache: DecodeCache, z_new):
  """The decoded image (B, L, L, C) in flow space of ``z_new``, a latent that differs
  from the cached one only at the sites of the cone's box (a ``Cone.for_latent_box``);
  only the blocks of its generation cone are recomputed."""
  prepared = _check_prepared(prepared)
  b, L, _, c = z_new.shape
  z_flat = z_new.reshape(b, L * L, c)
  prev = None
  for st, tab, base in zip(cone.plan.stages, cone.stages, cache.inputs, strict=True):
    if st.n_blocks == 0:  # a stage above the site's level (Cone.for_latent_site)
      continue
    inputs = base if prev is None else _where(tab.use_new, _gather(prev, tab.src), base)
    if st.ends_level:
      inputs = _where(tab.holds_latent, _gather(z_flat, tab.image_sites), inputs)
    out, _ = _run(flow, prepared, st, inputs, True)
    prev = out.reshape(b, -1, c)
  image = cache.image.reshape(b, L * L, c)
  return image.at[:, jnp.asarray(cone.out_sites)].set(prev, mode="drop").reshape(b, L, L, c)
