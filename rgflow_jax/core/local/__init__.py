"""Local inference: RG-Flow computed on the blocks of a causal cone only (O(log L) work).

A block of a layer mixes only its own k x k sites, so what a pixel region depends on,
and what depends on it, is a set of blocks per stage: the region's cone
(:mod:`rgflow_jax.core.cones` gives its sites as masks). Here a cone is one object
(:class:`Cone`: :mod:`.axes` finds its blocks along each axis, :mod:`.cone` builds its
tables) and :mod:`.engine` computes on its blocks alone:

    cone = Cone.for_region(flow, region)             # or Cone.for_box(flow, t, l, h, w)
    prepared = prepare(flow, params)                 # once per parameters
    cache = cache_baseline(flow, params, cone, baseline)
    delta = delta_log_prob(flow, prepared, cone, cache, new_pixels)
    pixels = decode_region(flow, prepared, cone, cone_latents(cone, z))
    edit = Cone.for_latent_box(flow, t, l, h, w)     # generation cone of latents
    image = edit_latents(flow, prepared, edit, cache_decode(flow, params, edit, z), z_new)
"""

from rgflow_jax.core.local.cone import Cone, Plan, bounding_box, make_plan
from rgflow_jax.core.local.engine import (BaselineCache, DecodeCache, Prepared, StageBaseline,
                                          cache_baseline, cache_decode, cone_latents,
                                          decode_region, delta_log_prob, edit_latents,
                                          prepare, with_cone_latents)

__all__ = ["BaselineCache", "Cone", "DecodeCache", "Plan", "Prepared", "StageBaseline",
           "bounding_box", "cache_baseline", "cache_decode", "cone_latents", "decode_region",
           "delta_log_prob", "edit_latents", "make_plan", "prepare", "with_cone_latents"]
