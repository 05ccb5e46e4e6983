"""Inpainting with the latents of a region's causal cone free (paper section 4.6, App. F):
which latents may move, the objective (the corrupted image's log-likelihood with the
region generated), best-of-N prior starts then Adam, and the PSNR over the region.

For RG-Flow the default computes only the cone's blocks each step
(:mod:`rgflow_jax.core.local`); other models, and ``on_cone=False``, use the whole image.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgflow_jax.core import cones, local, pixels, registry
from rgflow_jax.core.geometry import Geometry
from rgflow_jax.io.progress import bar as progress_bar
from rgflow_jax.paper import fid
from rgflow_jax.paper.latents import decode_jit, encode_jit


def psnr(a, b, mask=None) -> float:
  """Peak signal-to-noise ratio (dB) of images in [0, 1], over ``mask`` if given."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  err = (a - b) ** 2
  if mask is not None:
    err = err[np.broadcast_to(mask, err.shape)]
  mse = float(err.mean())
  return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _cone_geometry(flow) -> Geometry:
  """RG-Flow's own geometry; for other models, the paper's RG-Flow of the same image
  size (k = 4), whose cone sizes the randomly constrained baseline (App. F)."""
  geo = getattr(flow, "geometry", None)
  return geo if isinstance(geo, Geometry) else Geometry(flow.image_size, flow.channels, 4)


def free_latents(flow, region: np.ndarray, how: str = "cone", rng=None) -> np.ndarray:
  """(L, L, C) bool: the latents inpainting may change.

  ``cone``: the inference cone of the region (App. F; RG-Flow only); ``all``: every
  latent; ``random``: as many latents as RG-Flow's cone of that region holds, chosen
  at random (the paper's constrained Real NVP baseline).
  """
  if how not in ("cone", "all", "random"):
    raise ValueError(f"how must be 'cone', 'all' or 'random', got {how!r}")
  if how == "cone" and not registry.is_rgflow(flow):
    raise ValueError(f"{type(flow).__name__} has no causal cone: free 'random' latents "
                     "(as many as RG-Flow's cone holds, App. F) or 'all'")
  cone = np.repeat(cones.inference_cone(_cone_geometry(flow), region)[..., None],
                   flow.channels, axis=2)
  if how == "cone":
    return cone
  if how == "all":
    return np.ones_like(cone)
  gen = np.random.default_rng(rng)
  flat = np.zeros(cone.size, bool)
  flat[gen.choice(cone.size, int(cone.sum()), replace=False)] = True
  return flat.reshape(cone.shape)


def _generated(y):
  """Generated pixels from flow space, kept inside (0, 1) for the likelihood."""
  x = (jax.nn.sigmoid(y) - pixels.ALPHA) / (1 - 2 * pixels.ALPHA)
  return jnp.clip(x, 1e-6, 1 - 1e-6)


def neg_log_lik(flow, params, z_free, z_fixed, free_mask, region3, corrupted):
  """-log p of the corrupted image with the region generated from the latents."""
  z = jnp.where(free_mask, z_free, z_fixed)
  y, _ = flow.decode(params, z[None])
  x = jnp.where(region3, _generated(y[0]), corrupted)
  return -flow.log_prob_pixels(params, x[None])[0]


def cone_neg_log_lik(flow, prepared, cone, cache, box_mask, box_corrupted, z_cone):
  """The same objective less the baseline's, from the cone alone (rgflow_jax.core.local):
  -(log p(image) - log p(baseline)), the free latents being the cone's (n_cone, C);
  ``prepared``: local.prepare's parameters, made once."""
  x_gen = _generated(local.decode_region(flow, prepared, cone, z_cone[None])[0])
  x = jnp.where(box_mask[:, None], x_gen, box_corrupted)
  return -local.delta_log_prob(flow, prepared, cone, cache, x[None])[0]


def _best_start_then_adam(nll, starts, steps, lr, free_mask=None, on_step=None):
  """Pick the start with the lowest ``nll``, then ``steps`` of Adam on it (only the
  entries of ``free_mask`` move, if given); ``on_step(k)`` on the host after step k."""
  scores = jax.vmap(nll)(starts)
  z = starts[jnp.argmin(scores)]
  # Decaying steps: the Laplace prior's kink at 0 would leave Adam oscillating there.
  opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

  def body(i, carry):
    z, state = carry
    g = jax.grad(nll)(z)
    updates, state = opt.update(g if free_mask is None else g * free_mask, state)
    if on_step is not None:
      jax.debug.callback(on_step, i + 1)
    return optax.apply_updates(z, updates), state

  z, _ = jax.lax.fori_loop(0, steps, body, (z, opt.init(z)))
  return z, nll(z)


@functools.partial(jax.jit, static_argnums=(0, 7, 9))
def _inpaint_full(flow, params, starts, z_fixed, free_mask, region3, corrupted, steps, lr,
                  on_step=None):
  """One compiled program per model and step count: the whole image each step."""
  nll = functools.partial(neg_log_lik, flow, params, z_fixed=z_fixed, free_mask=free_mask,
                          region3=region3, corrupted=corrupted)
  z, value = _best_start_then_adam(nll, starts, steps, lr, free_mask, on_step)
  return jnp.where(free_mask, z, z_fixed), value


@functools.partial(jax.jit, static_argnums=(0, 7, 9))
def _inpaint_local(flow, params, cone, cache, box_mask, box_corrupted, starts, steps, lr,
                   on_step=None):
  """One compiled program per model, region shape and step count, any position: only
  the region's cone each step."""
  nll = functools.partial(cone_neg_log_lik, flow, local.prepare(flow, params), cone,
                          cache, box_mask, box_corrupted)
  return _best_start_then_adam(nll, starts, steps, lr, on_step=on_step)


def inpaint(flow, params, corrupted, region, rng, n_starts: int = 200, steps: int = 300,
            lr: float = 0.05, free: str = "cone", truth=None, on_cone: bool | None = None,
            on_step=None):
  """Inpaint ``region`` of one image (App. F).

  ``corrupted``: (L, L, C) image in [0, 1]; ``region``: (L, L) bool, True where it is
  corrupted. Only the latents in ``free_latents(flow, region, free)`` change; the rest
  stay at the encoding of the corrupted image (outside the cone they equal the
  truth's). The objective is the log-likelihood of the corrupted image with the
  generated region pasted in. The best of ``n_starts`` prior draws for the free
  latents starts Adam (``steps`` steps, learning rate ``lr`` decayed to 0 on a cosine).
  ``on_cone`` (RG-Flow, ``free="cone"``; the default there): every step computes only
  the blocks of the region's cone (:mod:`rgflow_jax.core.local`: the same objective up to a
  constant, the same starts and Adam steps, so the same latents up to rounding); False:
  the whole image each step, as any model can. ``on_step(k)``, if given, is called on
  the host after Adam step k = 1 .. ``steps`` (a progress bar's hook; each distinct
  callable is a program of its own, so pass one that lives as long as its caller).
  Returns (image in [0, 1], info dict with the PSNR over the region against ``truth``
  if given, the final negative log-likelihood, the latents and the free mask).
  """
  if on_cone is None:
    on_cone = free == "cone" and registry.is_rgflow(flow)
  if on_cone and not (free == "cone" and registry.is_rgflow(flow)):
    raise ValueError("local inpainting computes on RG-Flow's cone: it needs an RG-Flow "
                     f"and free='cone' (got {type(flow).__name__}, free={free!r})")
  region = np.asarray(region, bool)
  dtype = jax.tree.leaves(params)[0].dtype
  corrupted = jnp.asarray(corrupted, dtype)
  shape = flow.event_shape
  if corrupted.shape != shape or region.shape != shape[:2]:
    raise ValueError(f"inpaint expects an image of shape {shape} and a region of shape "
                     f"{shape[:2]}, got {corrupted.shape} and {region.shape}")
  rng, rng_free = jax.random.split(rng)
  seed = int(jax.random.randint(rng_free, (), 0, 2**31 - 1))
  free_mask = jnp.asarray(free_latents(flow, region, free, seed))
  region3 = jnp.asarray(region[..., None])
  y0, _ = pixels.to_flow(jnp.clip(corrupted, 1e-6, 1 - 1e-6)[None])
  z_fixed = encode_jit(flow, params, y0)[0][0]
  starts = flow.sample_latents(rng, n_starts, 1.0, dtype)
  if on_cone:
    z, nll = _inpaint_cone(flow, params, corrupted, region, z_fixed, starts, steps, lr,
                           on_step)
  else:
    z, nll = _inpaint_full(flow, params, starts, z_fixed, free_mask, region3, corrupted,
                           steps, lr, on_step)
  y, _ = decode_jit(flow, params, z[None])
  x = jnp.where(region3, pixels.from_flow(y)[0], corrupted)
  info = {"neg_log_lik": float(nll), "free_latents": int(free_mask.sum()), "z": z,
          "free_mask": free_mask, "local": bool(on_cone)}
  if truth is not None:
    info["psnr"] = psnr(x, truth, region[..., None])
  return x, info


def _inpaint_cone(flow, params, corrupted, region, z_fixed, starts, steps, lr, on_step):
  """The local path of :func:`inpaint`: (latents (L, L, C), negative log-likelihood)."""
  cone = local.Cone.for_region(flow, region)
  c = flow.channels
  box_mask = jnp.asarray(region.reshape(-1)[cone.pixels])
  box_corrupted = corrupted.reshape(-1, c)[cone.pixels]
  # The baseline: the corrupted image, with mid-grey in the region (any values would
  # do; these keep its pixel transform finite).
  baseline = jnp.where(jnp.asarray(region)[..., None], 0.5, corrupted)[None]
  cache = local.cache_baseline(flow, params, cone, baseline)
  base_nll = -cache.log_prob[0]
  z_cone, delta = _inpaint_local(flow, params, cone, cache, box_mask, box_corrupted,
                                 local.cone_latents(cone, starts), steps, lr, on_step)
  z = local.with_cone_latents(cone, z_fixed[None], z_cone[None])[0]
  return z, base_nll + delta


def inpaint_modes(flow) -> tuple[str, ...]:
  """Which latents inpainting frees for this model (App. F, Table F1).

  RG-Flow: its inference cone only (latents outside it cannot reach the region, so
  freeing all of them gives the same result exactly). Other models: a random set as
  large as RG-Flow's cone ("constrained"), and every latent.
  """
  return ("cone",) if registry.is_rgflow(flow) else ("random", "all")


def inpaint_table(flow, params, truth_u8, seed: int, rng, n_starts, n_steps, progress,
                  frees=None, extractor=None):
  """PSNR rows and panels (truth, corrupted, one per mode) for a 10 x 10 region of each
  uint8 image of ``truth_u8``, and with an Inception ``extractor``
  (:class:`rgflow_jax.paper.fid.Extractor`) the Inception-PSNR too.

  The regions and their noise depend only on ``seed`` and the images, so two models
  given the same images and seed inpaint the same corrupted images.
  """
  frees = tuple(frees or inpaint_modes(flow))
  L = flow.image_size
  size = max(2, round(10 * L / 32))  # the paper's 10 x 10 region on 32 x 32 images
  gen = np.random.default_rng(seed)
  rows, panels = [], []
  items = progress_bar(enumerate(truth_u8), progress, total=len(truth_u8),
                       desc="inpainting", unit="img")
  for k, truth_u8_k in items:
    truth = pixels.from_uint8(truth_u8_k)
    top, left = gen.integers(0, L - size + 1, size=2)
    region = np.zeros((L, L), bool)
    region[top:top + size, left:left + size] = True
    corrupted = np.where(region[..., None], gen.uniform(size=truth.shape), truth)
    row = {"image": k, "region": [int(top), int(left), size],
           "psnr_corrupted": psnr(corrupted, truth, region[..., None])}
    panel = [truth, corrupted]
    for how in frees:
      t0 = time.perf_counter()
      x, info = inpaint(flow, params, corrupted, region, jax.random.fold_in(rng, k),
                                 n_starts, n_steps, free=how, truth=truth)
      x = np.asarray(x)  # (waits for the result)
      row[f"seconds_{how}"] = time.perf_counter() - t0  # the first image's includes compiling
      row[f"psnr_{how}"] = info["psnr"]
      row[f"free_latents_{how}"] = info["free_latents"]
      row[f"local_{how}"] = info["local"]
      panel.append(x)
    if extractor is not None:  # features of truth, corrupted and each inpainting
      feats = extractor.features(np.stack([pixels.to_uint8_numpy(p) for p in panel]))
      row["inception_psnr_corrupted"] = fid.inception_psnr(feats[1], feats[0])
      for how, f in zip(frees, feats[2:], strict=True):
        row[f"inception_psnr_{how}"] = fid.inception_psnr(f, feats[0])
    rows.append(row)
    panels.extend(panel)
  summary = {"columns": ["truth", "corrupted"] + [f"free: {h}" for h in frees],
             "rows": rows, "modes": list(frees)}
  for key in ["psnr"] + (["inception_psnr"] if extractor is not None else []):
    for how in ("corrupted",) + frees:
      summary[f"mean_{key}_{how}"] = float(np.mean([r[f"{key}_{how}"] for r in rows]))
  for how in frees:
    seconds = [r[f"seconds_{how}"] for r in rows]
    # The median leaves out the first image's compile time (with 3 or more images).
    summary[f"median_seconds_{how}"] = float(np.median(seconds))
    summary[f"mean_free_latents_{how}"] = float(np.mean([r[f"free_latents_{how}"]
                                                         for r in rows]))
  return summary, np.stack(panels)
