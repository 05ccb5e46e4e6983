"""A cone as one object: the static plan and the named index tables of its stages.

A :class:`Cone` is built outside jit, once per region (or box of latents), and passed
to the engine (:mod:`rgflow_jax.core.local.engine`) as a pytree: its :class:`Plan` is static
(the padded shapes, one per region shape: one compiled program serves every position)
and its tables are arrays. A site of a stage's blocks reads either a new value (an
output of the previous stage, a new pixel, a latent) or a cached one (the baseline's);
the tables say which and from where.

The padded shapes are the largest cone of a region of that shape anywhere in the image;
padded blocks compute on block 0's inputs and are never read.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from rgflow_jax.core import geometry
from rgflow_jax.core.local import axes


@dataclasses.dataclass(frozen=True)
class PlanStage:
  """A stage of the flow (``RGFlow.stages``) with the padded number of its blocks."""

  stage: object  # rgflow_jax.core.rgflow.Stage
  n_blocks: int

  @property
  def level(self) -> int:
    return self.stage.level

  @property
  def layer(self) -> str:
    return self.stage.layer

  @property
  def ends_level(self) -> bool:
    return self.stage.ends_level


@dataclasses.dataclass(frozen=True)
class Plan:
  """The static shapes of the cones of ``height x width`` boxes anywhere in the image:
  stages in encode order (an inference cone) or decode order (a generation cone)."""

  geometry: geometry.Geometry
  height: int
  width: int
  generation: bool
  stages: tuple[PlanStage, ...]
  site_level: int | None = None  # a one-site generation plan padded over this level only

  @property
  def n_cone(self) -> int:
    """The most latent sites an inference cone of this plan holds (its padded length)."""
    k2, top = self.geometry.block_size ** 2, self.geometry.num_levels - 1
    return sum(st.n_blocks * (k2 if st.level == top else 3 * k2 // 4)
               for st in self.stages if st.ends_level)


@dataclasses.dataclass(frozen=True)
class StageIndex:
  """The index tables of one stage, each (P, k*k) over its P padded blocks' sites in
  :func:`geometry.to_blocks` order unless said otherwise."""

  ids: np.ndarray            # (P,) block indices on the level's grid (padding: 0)
  real: np.ndarray           # (P,) bool: a block of the cone, not padding
  sites: np.ndarray          # flat indices on the level's sub-lattice
  image_sites: np.ndarray    # the same sites as flat image indices
  holds_latent: np.ndarray   # bool: a latent of this level (decimator sites only)
  use_new: np.ndarray        # bool: reads the previous stage's output (else the cache)
  src: np.ndarray            # where in the previous stage's flattened outputs
  src_decode: np.ndarray | None = None   # inference cones: where decoding reads
  latent_slot: np.ndarray | None = None  # inference cones: the slot in cone_sites


@dataclasses.dataclass(frozen=True)
class Cone:
  """The cone of a box at one position; see the module docstring."""

  plan: Plan
  stages: tuple[StageIndex, ...]
  # inference cones: the box's pixels (flat image indices), where decoding's last
  # outputs hold them, and the cone's latent sites padded with L*L (out of range)
  pixels: np.ndarray | None = None
  pixels_from_decode: np.ndarray | None = None
  cone_sites: np.ndarray | None = None
  # generation cones: the image sites of the last stage's outputs (padding: L*L)
  out_sites: np.ndarray | None = None

  @classmethod
  def for_region(cls, flow, region) -> "Cone":
    """The inference cone of an (L, L) bool pixel region, through its bounding box
    (:func:`bounding_box`; a region of another shape gets a larger cone, the same
    exact results)."""
    return cls.for_box(flow, *bounding_box(region))

  @classmethod
  def for_box(cls, flow, top: int, left: int, height: int, width: int) -> "Cone":
    """The inference cone of the ``height x width`` pixels at (top, left)."""
    return _inference_cone(make_plan(flow, height, width, False), flow, top, left)

  @classmethod
  def for_latent_box(cls, flow, top: int, left: int, height: int, width: int) -> "Cone":
    """The generation cone of the latents at the image sites of a box (all levels and
    channels there): what changes when they change."""
    return _generation_cone(make_plan(flow, height, width, True), flow, top, left)

  @classmethod
  def for_latent_site(cls, flow, i: int, j: int) -> "Cone":
    """The generation cone of the latent at image site (i, j), padded over the sites of
    its level only (one plan per level): an edit of a fine latent computes a small
    cone, not the largest one-site cone anywhere."""
    plan = make_plan(flow, 1, 1, True, site_level=int(flow.level_of_site()[i, j]))
    return _generation_cone(plan, flow, i, j)

  @property
  def n_latents(self) -> int:
    """Latent sites in this cone (not counting padding): those its decimators hold."""
    return int(sum((np.asarray(t.holds_latent) & np.asarray(t.real)[:, None]).sum()
                   for t in self.stages))


for _cls, _data in ((StageIndex, [f.name for f in dataclasses.fields(StageIndex)]),
                    (Cone, ["stages", "pixels", "pixels_from_decode", "cone_sites",
                            "out_sites"])):
  jax.tree_util.register_dataclass(
      _cls, data_fields=_data,
      meta_fields=[f.name for f in dataclasses.fields(_cls) if f.name not in _data])


def _check_flow(flow) -> geometry.Geometry:
  geo = getattr(flow, "geometry", None)
  if not isinstance(geo, geometry.Geometry) or not hasattr(flow, "stages"):
    raise ValueError(f"local inference needs an RG-Flow's block geometry; "
                     f"{type(flow).__name__} is globally connected (use the full path)")
  return geo


def make_plan(flow, height: int, width: int, generation: bool = False,
              site_level: int | None = None) -> Plan:
  """Static shapes of the cones of ``height x width`` boxes, anywhere; with
  ``site_level``, of the generation cones of one latent site of that level."""
  geo = _check_flow(flow)
  if not (1 <= height <= geo.image_size and 1 <= width <= geo.image_size):
    raise ValueError(f"a box of {height} x {width} sites does not fit a "
                     f"{geo.image_size} x {geo.image_size} image")
  if site_level is not None:
    if not (generation and height == width == 1 and 0 <= site_level < geo.num_levels):
      raise ValueError("a plan by level is for the generation cone of one site of a "
                       f"level in 0..{geo.num_levels - 1}")
    most = axes.most_site_blocks(flow, site_level)
    stages = tuple(PlanStage(st, most[st.level][st.layer]) for st in flow.stages(inverse=True))
    return Plan(geo, 1, 1, True, stages, site_level)
  rows = axes.most_blocks(flow, height, generation)
  cols = axes.most_blocks(flow, width, generation)
  stages = tuple(PlanStage(st, rows[st.level][st.layer] * cols[st.level][st.layer])
                 for st in flow.stages(inverse=generation))
  return Plan(geo, height, width, generation, stages)


def bounding_box(region) -> tuple[int, int, int, int]:
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


def _stage_blocks(geo, plan_stage: PlanStage, row_blocks, col_blocks):
  """(ids padded to the plan, real, (P, k*k) level sub-lattice sites, their image
  sites, the level's latent sites among them)."""
  h, k, shift = plan_stage.level, geo.block_size, plan_stage.stage.shift
  edge, L = geo.edge(h), geo.image_size
  ids = (row_blocks[:, None] * (edge // k) + col_blocks[None, :]).reshape(-1)
  n_real = ids.size
  ids = np.concatenate([ids, np.zeros(plan_stage.n_blocks - n_real, ids.dtype)])
  ids = ids.astype(np.int64)
  p, q = ids // (edge // k), ids % (edge // k)
  a = np.arange(k)
  si = np.broadcast_to((k * p[:, None, None] + shift + a[None, :, None]) % edge,
                       (ids.size, k, k)).reshape(ids.size, k * k)
  sj = np.broadcast_to((k * q[:, None, None] + shift + a[None, None, :]) % edge,
                       (ids.size, k, k)).reshape(ids.size, k * k)
  latent = np.ones_like(si, bool) if h == geo.num_levels - 1 else (si % 2 == 1) | (sj % 2 == 1)
  return (ids, np.arange(plan_stage.n_blocks) < n_real, si * edge + sj,
          (si << h) * L + (sj << h), latent)


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


def _inference_cone(plan: Plan, flow, top: int, left: int) -> Cone:
  geo = plan.geometry
  L = geo.image_size
  rows = axes.inference_axis(flow, top % L, plan.height)
  cols = axes.inference_axis(flow, left % L, plan.width)
  r, c = (top + np.arange(plan.height)) % L, (left + np.arange(plan.width)) % L
  pixel_sites = (r[:, None] * L + c[None, :]).reshape(-1)
  blocks = [_stage_blocks(geo, st, rows[st.level][st.layer], cols[st.level][st.layer])
            for st in plan.stages]
  edges = [geo.edge(st.level) for st in plan.stages]
  stages = []
  for s, (ids, real, sites, image_sites, latent) in enumerate(blocks):
    # Encode: a site reads the previous stage's output where that computed it (the
    # first stage: the new pixels), else the baseline's value.
    if s == 0:
      src = _locate(sites, pixel_sites[None, :], np.ones(1, bool), L, L)
    else:
      src = _locate(sites, blocks[s - 1][2], blocks[s - 1][1], edges[s - 1], edges[s])
    holds = latent if plan.stages[s].ends_level else np.zeros_like(latent)
    # Decode: a decimator reads latents or the next level's disentangler's outputs; a
    # disentangler its own level's decimator's outputs.
    if s + 1 < len(blocks):
      dec = _locate(sites, blocks[s + 1][2], blocks[s + 1][1], edges[s + 1], edges[s])
      needed = ~holds & real[:, None]
      assert (dec[needed] >= 0).all(), "the cone does not close"  # by construction
    else:
      dec = np.zeros_like(sites)
    stages.append(dict(ids=ids, real=real, sites=sites, image_sites=image_sites,
                       holds_latent=holds, use_new=src >= 0, src=np.maximum(src, 0),
                       src_decode=np.maximum(dec, 0)))
  loc = _locate(pixel_sites[None, :], stages[0]["sites"], stages[0]["real"], L, L)
  assert (loc >= 0).all()
  cone = np.concatenate([t["image_sites"][t["holds_latent"] & t["real"][:, None]]
                         for t in stages])
  slot = np.zeros(L * L + 1, np.int64)
  slot[cone] = np.arange(cone.size)
  return Cone(plan, tuple(StageIndex(**t, latent_slot=slot[t["image_sites"]])
                          for t in stages),
              pixels=pixel_sites, pixels_from_decode=loc[0],
              cone_sites=np.concatenate([cone, np.full(plan.n_cone - cone.size, L * L)]))


def _generation_cone(plan: Plan, flow, top: int, left: int) -> Cone:
  geo = plan.geometry
  L, k = geo.image_size, geo.block_size
  rows = axes.generation_axis(flow, top % L, plan.height)
  cols = axes.generation_axis(flow, left % L, plan.width)
  stages = []
  for s, st in enumerate(plan.stages):
    ids, real, sites, image_sites, latent = _stage_blocks(
        geo, st, rows[st.level][st.layer], cols[st.level][st.layer])
    if s == 0:
      src = np.full(sites.shape, -1)
    else:
      prev = stages[-1]
      src = _locate(sites, prev.sites, prev.real, geo.edge(plan.stages[s - 1].level),
                    geo.edge(st.level))
    holds = latent if st.ends_level else np.zeros_like(latent)
    src = np.where(holds, -1, src)  # latents are read from the new z, wherever they are
    stages.append(StageIndex(ids, real, sites, image_sites, holds, src >= 0,
                             np.maximum(src, 0)))
  last = stages[-1]
  out_sites = np.where(np.repeat(last.real, k * k), last.sites.reshape(-1), L * L)
  return Cone(plan, tuple(stages), out_sites=out_sites)
