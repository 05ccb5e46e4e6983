"""Local inference: RG-Flow computed on the blocks of a causal cone only (O(log L) work).

A block of a layer mixes only its own k x k sites, so what a pixel region R depends on,
and what depends on it, is a set of blocks per level and layer: the region's cone
(:mod:`rgflow_jax.cones` gives its sites). This module computes on those blocks alone:

- :func:`decode_region`: the generated pixels of R from the latents (only the blocks
  R's pixels depend on, level by level from the top);
- :func:`delta_log_prob`: log p(x) - log p(baseline) for an image x that differs from
  a baseline only inside R, from the blocks of R's inference cone, the baseline's
  activations and per-block log-dets cached once (:func:`cache_baseline`);
- :func:`edit_latents`: a decoded image after a change of some latents, with only
  their generation cones recomputed.

Every computation is a short list of *stages* (one layer of one level, in the order
the flow runs them). A stage gathers its blocks' inputs, runs them through the same
batched RNVP block as the full model (:func:`rgflow_jax.coupling_fast.apply_blocks`)
and hands its outputs on. A block site's input is either a new value (an output of the
previous stage, a new pixel, a latent) or the baseline's value there. The tables that
say which are static NumPy arrays; their shapes are padded to the largest cone of a
region of that shape anywhere in the image (per axis, over every offset, periodic wrap
included), so one compiled program serves every position; padded blocks compute on
dummy inputs and are never read.

Cones of a rectangle are products of one-dimensional intervals (the blocks of a layer
are products of intervals), which is how the tables are built; a region of another
shape is handled through its bounding box (a larger cone, the same exact results).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import coupling_fast, geometry, pixels, priors
from rgflow_jax.execution import DEFAULT
from rgflow_jax.geometry import DECIMATOR, DISENTANGLER

ENCODE_ORDER = (DISENTANGLER, DECIMATOR)


# ------------------------------------------------------------ 1-D cones
def _interval(start: int, length: int, edge: int) -> np.ndarray:
  mask = np.zeros(edge, bool)
  mask[(start + np.arange(length)) % edge] = True
  return mask


def _blocks_touching(mask: np.ndarray, k: int, shift: int) -> np.ndarray:
  """The block indices (along one axis) of a layer whose k sites meet ``mask``."""
  edge = mask.size
  ids = ((np.arange(edge) - shift) % edge) // k
  return np.unique(ids[mask])


def _sites_of(blocks: np.ndarray, k: int, shift: int, edge: int) -> np.ndarray:
  """(n_blocks, k) site indices of those blocks (block p holds k*p + shift + a)."""
  return (k * blocks[:, None] + shift + np.arange(k)[None, :]) % edge


def _through_layers(geo, touched: np.ndarray, order) -> tuple[dict, np.ndarray]:
  """Along one axis of a level: the blocks of each layer (in ``order``) that the sites
  ``touched`` reach, and the sites those blocks cover after the last layer."""
  k, edge, level = geo.block_size, touched.size, {}
  for layer in order:
    shift = geo.shift(layer)
    level[layer] = _blocks_touching(touched, k, shift)
    touched = np.zeros(edge, bool)
    touched[_sites_of(level[layer], k, shift, edge).reshape(-1)] = True
  return level, touched


def _axis_cone(geo, start: int, length: int) -> list[dict]:
  """Along one axis: for each level, the blocks of each layer in the cone of the
  interval [start, start + length) of pixels (as the cones module closes a set)."""
  out = []
  touched = _interval(start, length, geo.image_size)
  for _ in range(geo.num_levels):
    level, touched = _through_layers(geo, touched, ENCODE_ORDER)
    out.append(level)
    touched = touched[::2]
  return out


@functools.lru_cache(maxsize=64)
def _max_blocks(geo, length: int, generation: bool = False) -> tuple[dict, ...]:
  """Per level and layer, the most blocks along one axis over every offset, in the
  inference cones of intervals of ``length`` pixels (or the generation cones of
  intervals of sites)."""
  cone = _axis_generation_cone if generation else _axis_cone
  most = [dict.fromkeys(ENCODE_ORDER, 0) for _ in range(geo.num_levels)]
  for start in range(geo.image_size):
    for h, level in enumerate(cone(geo, start, length)):
      for layer, blocks in level.items():
        most[h][layer] = max(most[h][layer], len(blocks))
  return tuple(most)


def _make_plan(flow, height: int, width: int, generation: bool) -> Plan:
  geo = _geometry(flow)
  if not (1 <= height <= geo.image_size and 1 <= width <= geo.image_size):
    raise ValueError(f"a box of {height} x {width} sites does not fit a "
                     f"{geo.image_size} x {geo.image_size} image")
  rows, cols = _max_blocks(geo, height, generation), _max_blocks(geo, width, generation)
  if generation:  # decode order: the top level first, the decimator first
    order = [(h, layer) for h in reversed(range(geo.num_levels)) for layer in DECODE_ORDER]
  else:
    order = [(h, layer) for h in range(geo.num_levels) for layer in ENCODE_ORDER]
  stages = tuple(Stage(h, layer, rows[h][layer] * cols[h][layer]) for h, layer in order)
  return Plan(geo, height, width, stages)


# --------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class Stage:
  """One layer of one level, with the padded number of its blocks in the cone."""

  level: int
  layer: str
  n_blocks: int


@dataclasses.dataclass(frozen=True)
class Plan:
  """The static shapes of the cone computations for regions of ``height x width``
  pixels in images of ``flow``: one per (flow, region shape), any position."""

  geometry: geometry.Geometry
  height: int
  width: int
  stages: tuple[Stage, ...]  # in encode order

  @property
  def n_cone(self) -> int:
    """The most latent sites a cone of this plan holds (the padded cone length)."""
    k2, top = self.geometry.block_size ** 2, self.geometry.num_levels - 1
    return sum(st.n_blocks * (k2 if st.level == top else 3 * k2 // 4)
               for st in self.stages if st.layer == DECIMATOR)


def _geometry(flow) -> geometry.Geometry:
  geo = getattr(flow, "geometry", None)
  if not isinstance(geo, geometry.Geometry):
    raise ValueError(f"local inference needs an RG-Flow's block geometry; "
                     f"{type(flow).__name__} is globally connected (use the full path)")
  return geo


def make_plan(flow, height: int, width: int) -> Plan:
  """Static shapes for the inference cones of ``height x width`` regions, anywhere;
  stages in encode order."""
  return _make_plan(flow, height, width, generation=False)


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int]:
  """(top, left, height, width) of an (L, L) bool region, the smallest box that holds
  it with periodic wrap (rows and columns taken as circles)."""
  region = np.asarray(region, bool)
  if region.ndim != 2 or region.shape[0] != region.shape[1] or not region.any():
    raise ValueError(f"region must be a non-empty (L, L) bool mask, got shape "
                     f"{region.shape} with {int(region.sum())} pixels")

  def arc(used):  # the shortest circular interval that covers every used index
    n, idx = used.size, np.flatnonzero(used)
    gaps = np.diff(np.concatenate([idx, idx[:1] + n]))
    g = int(np.argmax(gaps))
    start = int(idx[(g + 1) % idx.size])
    return start, n - int(gaps[g]) + 1

  (top, height), (left, width) = arc(region.any(axis=1)), arc(region.any(axis=0))
  return top, left, height, width


def _blocks_2d(row_blocks, col_blocks, n_side: int, pad_to: int) -> tuple[np.ndarray, int]:
  ids = (row_blocks[:, None] * n_side + col_blocks[None, :]).reshape(-1)
  n = ids.size  # padded with block 0: computed on, never read
  return np.concatenate([ids, np.zeros(pad_to - n, ids.dtype)]).astype(np.int64), n


def _block_sites(geo, h: int, layer: str, ids: np.ndarray) -> np.ndarray:
  """(P, k*k) flat level-h sub-lattice indices of the sites of blocks ``ids``, in the
  (a, b) order of :func:`geometry.to_blocks`."""
  k, edge, shift = geo.block_size, geo.edge(h), geo.shift(layer)
  n_side = edge // k
  p, q = ids // n_side, ids % n_side
  a = np.arange(k)
  i = (k * p[:, None, None] + shift + a[None, :, None]) % edge
  j = (k * q[:, None, None] + shift + a[None, None, :]) % edge
  return (i * edge + j).reshape(len(ids), k * k)


def _locate(sites, source_sites, source_real, source_edge: int, edge: int) -> np.ndarray:
  """For level-``edge`` flat ``sites`` (any shape), the position of each in the
  flattened ``source_sites`` (P, n) of the real source blocks (flat indices on a
  sub-lattice of edge ``source_edge``: the same level, the one below, whose ::2 sites
  are ours, or the one above, which holds our ::2 sites), or -1 where none has it."""
  src = source_sites.reshape(-1)
  ok = np.repeat(source_real, source_sites.shape[1])
  target = np.asarray(sites)
  if source_edge == 2 * edge:  # the level below
    fi, fj = src // source_edge, src % source_edge
    ok = ok & (fi % 2 == 0) & (fj % 2 == 0)
    src = (fi // 2) * edge + fj // 2
  covered = np.ones(target.shape, bool)
  if 2 * source_edge == edge:  # the level above
    ti, tj = target // edge, target % edge
    covered = (ti % 2 == 0) & (tj % 2 == 0)
    target = (ti // 2) * source_edge + tj // 2
  where = np.full(max(edge, source_edge) ** 2, -1)
  where[src[ok]] = np.flatnonzero(ok)
  return np.where(covered, where[target], -1)


def tables(plan: Plan, top: int, left: int) -> dict:
  """The index tables of the cone of the ``plan``-shaped region at (top, left): NumPy
  arrays of the plan's padded shapes (inputs of the jitted functions, so that one
  program serves every position)."""
  geo = plan.geometry
  L, k = geo.image_size, geo.block_size
  rows = _axis_cone(geo, top % L, plan.height)
  cols = _axis_cone(geo, left % L, plan.width)
  r = (top + np.arange(plan.height)) % L
  c = (left + np.arange(plan.width)) % L
  pixel_sites = (r[:, None] * L + c[None, :]).reshape(-1)
  out = {"pixels": pixel_sites, "stages": []}
  for s, stage in enumerate(plan.stages):
    h, edge = stage.level, geo.edge(stage.level)
    ids, n_real = _blocks_2d(rows[h][stage.layer], cols[h][stage.layer], edge // k,
                             stage.n_blocks)
    sites = _block_sites(geo, h, stage.layer, ids)  # (P, k*k) level-h flat indices
    real = np.arange(stage.n_blocks) < n_real
    stride = 1 << h
    si, sj = sites // edge, sites % edge
    holds_latent = np.ones_like(sites, bool) if h == geo.num_levels - 1 else \
        (si % 2 == 1) | (sj % 2 == 1)
    out["stages"].append({
        "ids": ids, "real": real, "sites": sites,
        # flat image indices of each site, and the latents of this level among the
        # decimator's outputs (the disentangler's sites hold none)
        "image_sites": (si * stride) * L + sj * stride,
        "holds_latent": holds_latent if stage.layer == DECIMATOR else
                        np.zeros_like(sites, bool),
    })
  stages = out["stages"]
  for s, tab in enumerate(stages):
    # Encode: a site's input is the previous stage's output where that computed it
    # (the first stage: the new pixels), else the baseline's value.
    if s == 0:
      src = _locate(tab["sites"], pixel_sites[None, :], np.ones(1, bool), L, L)
    else:
      src = _locate(tab["sites"], stages[s - 1]["sites"], stages[s - 1]["real"],
                    geo.edge(plan.stages[s - 1].level), geo.edge(plan.stages[s].level))
    tab["use_new"], tab["src"] = src >= 0, np.maximum(src, 0)
    # Decode: the decimator's inputs are latents or the next level's disentangler's
    # outputs; the disentangler's are its own level's decimator's outputs.
    if s + 1 < len(stages):
      nxt = plan.stages[s + 1]
      dec = _locate(tab["sites"], stages[s + 1]["sites"], stages[s + 1]["real"],
                    geo.edge(nxt.level), geo.edge(plan.stages[s].level))
      needed = ~tab["holds_latent"] & tab["real"][:, None]
      assert (dec[needed] >= 0).all(), "the cone does not close"  # by construction
      tab["src_decode"] = np.maximum(dec, 0)
    else:
      tab["src_decode"] = np.zeros_like(tab["sites"])
  first = stages[0]
  loc = _locate(pixel_sites[None, :], first["sites"], first["real"], L, L)
  assert (loc >= 0).all()
  out["pixels_from_decode"] = loc[0]
  # The cone's latent sites (flat image indices), padded with L*L (out of range), and
  # for each decimator site its slot in that list.
  cone = [t["image_sites"][t["holds_latent"] & t["real"][:, None]] for t in stages]
  cone = np.concatenate(cone)
  out["cone_sites"] = np.concatenate([cone, np.full(plan.n_cone - cone.size, L * L)])
  slot = np.full(L * L + 1, 0)
  slot[cone] = np.arange(cone.size)
  for tab in stages:
    tab["latent_slot"] = slot[tab["image_sites"]]
  return out


# ------------------------------------------------------------ the engine
def prepare(flow, params, execution=None) -> dict:
  """The parameters of every level's two layers through coupling_fast.prepare (weight
  norm, checkerboard order), done once: pass the result as ``prepared`` to the
  functions below when they run many times with the same parameters (as inside an
  optimisation loop over latents), so that no step repeats it."""
  dtype = (execution or DEFAULT).matmul_jnp_dtype
  k, c = flow.block_size, flow.channels
  return {(h, layer): coupling_fast.prepare(params[flow._param_key(h)][layer], k, c, dtype)
          for h in range(flow.num_levels) for layer in ENCODE_ORDER}


def _run(flow, prepared, stage: Stage, inputs, inverse: bool, execution):
  """inputs (B, P, k*k, C) -> (outputs of the same shape, per-block log-dets (B, P))."""
  b, p, kk, c = inputs.shape
  k = flow.block_size
  out, ld = coupling_fast.apply_prepared(prepared[stage.level, stage.layer],
                                         inputs.reshape(b * p, k, k, c), inverse=inverse,
                                         execution=execution)
  return out.reshape(b, p, kk, c), ld.reshape(b, p)


def _gather(values, index):
  """values (B, N, C), index (...) -> (B, ..., C)."""
  return jnp.take(values, jnp.asarray(index), axis=1)


def full_intermediates(flow, params, y, execution=None):
  """Encode ``y`` (B, L, L, C) keeping, for every stage (level, layer) in encode order,
  its input (B, E*E, C) on the level's sub-lattice and the per-block log-dets
  (B, blocks); and the latent z as ``flow.encode`` returns it."""
  execution = execution or DEFAULT
  geo, x = flow.geometry, jnp.asarray(y)
  inputs, lds, outputs = [], [], []
  for h in range(flow.num_levels):
    for layer in ENCODE_ORDER:
      b, e, _, c = x.shape
      inputs.append(x.reshape(b, e * e, c))
      shift = geo.shift(layer)
      blocks = geometry.to_blocks(x, flow.block_size, shift)
      nb = blocks.shape[1]
      out, ld = coupling_fast.apply_blocks(
          params[flow._param_key(h)][layer], blocks.reshape((b * nb,) + blocks.shape[2:]),
          execution=execution)
      lds.append(ld.reshape(b, nb))
      x = geometry.from_blocks(out.reshape(blocks.shape), shift)
    outputs.append(x)
    x = geometry.coarse_sites(x)
  z = outputs[-1]
  for o in reversed(outputs[:-1]):
    z = geometry.with_coarse_sites(o, z)
  return {"inputs": inputs, "log_dets": lds, "z": z}


@functools.partial(jax.jit, static_argnums=(0, 4))
def cache_baseline(flow, params, tabs: dict, baseline_pixels, execution=None):
  """What :func:`delta_log_prob` needs of the baseline image (1, L, L, C) in [0, 1]:
  each stage's baseline inputs at its block sites, its per-block log-dets and latents,
  the baseline's pixels in the region, and its log-density (``log_prob``, per image, as
  ``flow.log_prob_pixels``). Computed once, at full size."""
  x = jnp.asarray(baseline_pixels)
  y, ld_pixels = pixels.to_flow(x)
  full = full_intermediates(flow, params, y, execution)
  z_flat = full["z"].reshape(1, -1, flow.channels)
  log_prob = (flow.prior_log_prob(full["z"]) + ld_pixels
              + sum(jnp.sum(ld, axis=1) for ld in full["log_dets"]))
  cache = {"pixels": _gather(x.reshape(1, -1, flow.channels), tabs["pixels"]), "stages": [],
           "log_prob": log_prob}
  for s, tab in enumerate(tabs["stages"]):
    cache["stages"].append({
        "inputs": _gather(full["inputs"][s], tab["sites"]),
        "log_dets": jnp.take(full["log_dets"][s], jnp.asarray(tab["ids"]), axis=1),
        "latents": _gather(z_flat, tab["image_sites"])})
  return cache


def _pixel_log_det(x):
  """log|det| of the pixel transform at pixels x (B, N, C) in [0, 1], per image."""
  return pixels.to_flow(x[:, :, None, :])[1]


def delta_log_prob(flow, params, plan: Plan, tabs: dict, cache: dict, new_pixels,
                   execution=None, prepared=None):
  """log p(x) - log p(baseline) per image, for images x equal to the baseline outside
  the region and ``new_pixels`` (B, H*W, C) in [0, 1] (row-major over the region's
  box) inside it; from the blocks of the region's inference cone only."""
  execution = execution or DEFAULT
  prepared = prepared or prepare(flow, params, execution)
  b = new_pixels.shape[0]
  prev = pixels.to_flow(new_pixels[:, :, None, :])[0][:, :, 0, :]
  delta = _pixel_log_det(new_pixels) - _pixel_log_det(cache["pixels"])
  for stage, tab, base in zip(plan.stages, tabs["stages"], cache["stages"], strict=True):
    use_new = jnp.asarray(tab["use_new"])[None, :, :, None]
    inputs = jnp.where(use_new, _gather(prev, tab["src"]), base["inputs"])
    out, ld = _run(flow, prepared, stage, inputs, False, execution)
    real = jnp.asarray(tab["real"], out.dtype)
    delta = delta + jnp.sum((ld - base["log_dets"]) * real, axis=1)
    if stage.layer == DECIMATOR:
      w = jnp.asarray(tab["holds_latent"] & tab["real"][:, None], out.dtype)
      lp = priors.log_density(flow.prior, out, 1.0) - \
          priors.log_density(flow.prior, base["latents"], 1.0)
      delta = delta + jnp.sum(lp * w[None, :, :, None], axis=(1, 2, 3))
    prev = out.reshape(b, -1, out.shape[-1])
  return delta


def cone_latents(tabs: dict, z):
  """The latents of the region's inference cone (B, n_cone, C), in the order of
  ``tabs["cone_sites"]`` (padding: zeros), from a latent z (B, L, L, C)."""
  b, L, _, c = z.shape
  return jnp.take(z.reshape(b, L * L, c), jnp.asarray(tabs["cone_sites"]), axis=1,
                  mode="fill", fill_value=0)


def with_cone_latents(tabs: dict, z, values):
  """z (B, L, L, C) with its cone latents replaced by ``values`` (B, n_cone, C)."""
  b, L, _, c = z.shape
  flat = z.reshape(b, L * L, c).at[:, jnp.asarray(tabs["cone_sites"])].set(values,
                                                                           mode="drop")
  return flat.reshape(z.shape)


def decode_region(flow, params, plan: Plan, tabs: dict, latents, execution=None,
                  prepared=None):
  """The generated pixels (B, H*W, C) in flow space (row-major over the region's box)
  of the cone latents ``latents`` (B, n_cone, C) (:func:`cone_latents`), from the
  blocks the region depends on only; equal to ``flow.decode``'s there. (The region's
  pixels depend on no other latent.)"""
  execution = execution or DEFAULT
  prepared = prepared or prepare(flow, params, execution)
  b = latents.shape[0]
  prev = None
  for stage, tab in zip(reversed(plan.stages), reversed(tabs["stages"])):
    if stage.layer == DECIMATOR:
      z = _gather(latents, tab["latent_slot"])
      inputs = z if prev is None else jnp.where(
          jnp.asarray(tab["holds_latent"])[None, :, :, None], z,
          _gather(prev, tab["src_decode"]))
    else:
      inputs = _gather(prev, tab["src_decode"])
    out, _ = _run(flow, prepared, stage, inputs, True, execution)
    prev = out.reshape(b, -1, out.shape[-1])
  return _gather(prev, tabs["pixels_from_decode"])


# ------------------------------------------------------------ latent edits
DECODE_ORDER = (DECIMATOR, DISENTANGLER)


def _axis_generation_cone(geo, start: int, length: int) -> list[dict]:
  """Along one axis, from the top level down: the blocks of each layer that a change
  of the latents at image sites [start, start + length) reaches (indexed by level)."""
  L = geo.image_size
  box = _interval(start, length, L)
  out = [None] * geo.num_levels
  touched = None
  for h in reversed(range(geo.num_levels)):
    edge = geo.edge(h)
    own = box[:: 1 << h]  # this level's sub-lattice sites inside the box
    if touched is None:
      touched = own.copy()
    else:  # the level above's outputs are this level's ::2 sites
      finer = np.zeros(edge, bool)
      finer[::2] = touched
      touched = finer | own
    level, touched = _through_layers(geo, touched, DECODE_ORDER)
    out[h] = level
  return out


def make_edit_plan(flow, height: int, width: int) -> Plan:
  """Static shapes for edits of the latents at the sites of a ``height x width`` box of
  the image (all levels, all channels there), anywhere; stages in decode order."""
  return _make_plan(flow, height, width, generation=True)


def edit_tables(plan: Plan, top: int, left: int) -> dict:
  """Index tables of the generation cone of the box at (top, left) (see :func:`tables`)."""
  geo = plan.geometry
  L, k = geo.image_size, geo.block_size
  rows = _axis_generation_cone(geo, top % L, plan.height)
  cols = _axis_generation_cone(geo, left % L, plan.width)
  stages = []
  for s, stage in enumerate(plan.stages):
    h, edge = stage.level, geo.edge(stage.level)
    ids, n_real = _blocks_2d(rows[h][stage.layer], cols[h][stage.layer], edge // k,
                             stage.n_blocks)
    sites = _block_sites(geo, h, stage.layer, ids)
    si, sj = sites // edge, sites % edge
    tab = {"ids": ids, "real": np.arange(stage.n_blocks) < n_real, "sites": sites,
           "image_sites": (si << h) * L + (sj << h)}
    if s == 0:
      src = np.full(sites.shape, -1)
    else:
      prev = stages[-1]
      src = _locate(sites, prev["sites"], prev["real"], geo.edge(plan.stages[s - 1].level),
                    edge)
    if stage.layer == DECIMATOR:  # latents are read from the new z, wherever they are
      holds = np.ones_like(sites, bool) if h == geo.num_levels - 1 else \
          (si % 2 == 1) | (sj % 2 == 1)
      src = np.where(holds, -1, src)
      tab["holds_latent"] = holds
    tab["use_new"], tab["src"] = src >= 0, np.maximum(src, 0)
    stages.append(tab)
  last = stages[-1]
  out_sites = np.where(np.repeat(last["real"], k * k), last["sites"].reshape(-1), L * L)
  return {"stages": stages, "out_sites": out_sites}


def _decode_intermediates(flow, params, z, execution):
  """Decode z (B, L, L, C), keeping every stage's input (B, E*E, C) in decode order."""
  geo, inputs = flow.geometry, []
  per_level = [z]
  for _ in range(flow.num_levels - 1):
    per_level.append(geometry.coarse_sites(per_level[-1]))
  x = None
  for h in reversed(range(flow.num_levels)):
    y = per_level[h] if x is None else geometry.with_coarse_sites(per_level[h], x)
    for layer in DECODE_ORDER:
      b, e, _, c = y.shape
      inputs.append(y.reshape(b, e * e, c))
      shift = geo.shift(layer)
      blocks = geometry.to_blocks(y, flow.block_size, shift)
      out, _ = coupling_fast.apply_blocks(params[flow._param_key(h)][layer],
                                          blocks.reshape((-1,) + blocks.shape[2:]),
                                          inverse=True, execution=execution)
      y = geometry.from_blocks(out.reshape(blocks.shape), shift)
    x = y
  return inputs, x


@functools.partial(jax.jit, static_argnums=(0, 4))
def cache_decode(flow, params, tabs: dict, z, execution=None):
  """What :func:`edit_latents` needs of the decode of z (B, L, L, C): each stage's
  inputs at its block sites, and the decoded image (flow space)."""
  inputs, image = _decode_intermediates(flow, params, z, execution or DEFAULT)
  return {"inputs": [_gather(x, tab["sites"]) for x, tab in zip(inputs, tabs["stages"],
                                                                strict=True)],
          "image": image}


def edit_latents(flow, params, plan: Plan, tabs: dict, cache: dict, z_new,
                 execution=None, prepared=None):
  """The decoded image (B, L, L, C) in flow space of ``z_new``, a latent that differs
  from the cached one only at the sites of the plan's box at the tables' position;
  only the blocks of the box's generation cone are recomputed."""
  execution = execution or DEFAULT
  prepared = prepared or prepare(flow, params, execution)
  b, L, _, c = z_new.shape
  z_flat = z_new.reshape(b, L * L, c)
  prev = None
  for stage, tab, base in zip(plan.stages, tabs["stages"], cache["inputs"], strict=True):
    inputs = base if prev is None else jnp.where(
        jnp.asarray(tab["use_new"])[None, :, :, None], _gather(prev, tab["src"]), base)
    if stage.layer == DECIMATOR:
      inputs = jnp.where(jnp.asarray(tab["holds_latent"])[None, :, :, None],
                         _gather(z_flat, tab["image_sites"]), inputs)
    out, _ = _run(flow, prepared, stage, inputs, True, execution)
    prev = out.reshape(b, -1, c)
  image = cache["image"].reshape(b, L * L, c)
  return image.at[:, jnp.asarray(tabs["out_sites"])].set(prev, mode="drop").reshape(b, L, L, c)
