"""The explorer's model side: a trained RG-Flow, its programs compiled once, and the
images on show, each a :class:`View` (its latents and pixels) kept under a key.

    explorer = Explorer(flow, params, test_images)   # uint8 (N, L, L, C)
    explorer.warm_up()                               # every program compiled, once
    view = explorer.open_test(0)                     # or open_sample, open_png
    view = explorer.edit(view.key, i, j, c, 1.5)     # only the generation cone decoded

Pixels go in and out as uint8 (L, L, C), the model's own quantisation (``pixels.to_uint8``),
latents as float32 (L, L, C). An edit of the latent at one site recomputes the blocks
of that site's generation cone (:func:`rgflow_jax.core.local.edit_latents` on
``Cone.for_latent_site``: padded over the sites of its level, so a fine latent's edit
is cheap; one program per level), from the decode's stage inputs cached when the site
is selected: one full decode per selection, none per edit. Mixing follows the paper's
eq. 15, a level at a time; inpainting is :func:`rgflow_jax.paper.inpainting.inpaint` on
the region's cone.

Bad input is an :class:`ExplorerError` (a ``ValueError``) whose message is one line
for the page; nothing here touches a file.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import io
import itertools
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from rgflow_jax import data
from rgflow_jax.core import local, pixels, registry
from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.paper import inpainting, receptive
from rgflow_jax.paper.latents import encode_jit, level_mask

MAX_VIEWS = 64          # views kept; the oldest is forgotten first
MAX_FIELDS = 256        # receptive fields kept (each L * L floats)
MAX_JOBS = 16           # finished inpainting jobs kept for polling
MAX_UPLOAD_BYTES = 4 << 20


class ExplorerError(RGFlowError, ValueError):
  """A request the explorer cannot serve; its message is one line for the page."""


@dataclasses.dataclass
class View:
  """One image on show: its latents (1, L, L, C) float32, its pixels uint8 (L, L, C)
  and where it came from."""

  key: str
  z: jax.Array
  image: np.ndarray
  source: str


@dataclasses.dataclass
class Job:
  """A long computation (inpainting) run beside the requests, read by polling."""

  key: str
  total: int
  done: int = 0
  state: str = "running"   # running, done or failed
  result: dict | None = None
  error: str | None = None
  started: float = dataclasses.field(default_factory=time.perf_counter)

  def step(self, k):
    self.done = int(k)


class _CompileCounter:
  """Backend compilations in this process, counted through ``jax.monitoring`` (the
  listener is registered on the first Explorer, not at import)."""

  count = 0
  _registered = False

  @classmethod
  def start(cls):
    if not cls._registered:
      jax.monitoring.register_event_duration_secs_listener(cls._on_event)
      cls._registered = True

  @classmethod
  def _on_event(cls, event, duration, **_):
    del duration
    if event.endswith("backend_compile_duration"):
      cls.count += 1


def _to_uint8(y):
  return pixels.to_uint8(pixels.from_flow(y))


@functools.partial(jax.jit, static_argnums=0)
def _decode_uint8(flow, params, z):
  return _to_uint8(flow.decode(params, z)[0])


@functools.partial(jax.jit, static_argnums=0)
def _edit_uint8(flow, prepared, cone, cache, z, latent, value):
  """(z with latent (i, j, c) set to ``value``, its decode as uint8): one program."""
  z_new = z.at[0, latent[0], latent[1], latent[2]].set(value)
  return z_new, _to_uint8(local.edit_latents(flow, prepared, cone, cache, z_new))


class Explorer:
  """Views of a trained RG-Flow's images and latents, and what the page asks of them."""

  def __init__(self, flow, params, test_images=None, rf_samples: int = 16,
               inpaint_starts: int = 200, inpaint_steps: int = 300):
    if not registry.is_rgflow(flow):
      raise ExplorerError(f"the explorer reads RG-Flow's latents level by level; this run "
                          f"is a {type(flow).__name__}")
    if flow.channels not in (1, 3):
      raise ExplorerError(f"the explorer shows grey (C = 1) or colour (C = 3) images, not "
                          f"{flow.channels} channels")
    _CompileCounter.start()
    self.flow = flow
    self.params = params
    self.prepared = local.prepare(flow, params)
    self.dtype = jax.tree.leaves(params)[0].dtype
    # Every view's latents live on the parameters' device, placed there (committed):
    # so are the edits' outputs, and each edit program compiles once whatever made z.
    self.device = next(iter(jax.tree.leaves(params)[0].devices()))
    self.test_images = (np.zeros((0,) + flow.event_shape, np.uint8) if test_images is None
                        else np.asarray(test_images, np.uint8))
    if self.test_images.shape[1:] != flow.event_shape:
      raise ExplorerError(f"test images must be {flow.event_shape}, got "
                          f"{self.test_images.shape[1:]}")
    self.rf_samples = rf_samples
    self.inpaint_starts, self.inpaint_steps = inpaint_starts, inpaint_steps
    self.views: collections.OrderedDict[str, View] = collections.OrderedDict()
    self.jobs: dict[str, Job] = {}
    self._keys = itertools.count(1)
    self._lock = threading.RLock()
    self._selected = None   # (view key, i, j, cone, decode cache) of the site being edited
    self._cones = {}
    self._fields: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()

  @classmethod
  def for_run(cls, run, test_images: int = 64, **options) -> "Explorer":
    """The explorer of a loaded run (:func:`rgflow_jax.load`'s ``TrainedRun``), with the
    first ``test_images`` images of its test set; ``options`` as the constructor's."""
    images = None
    if test_images:
      source = data.make_source(run.config.data, "test", run.flow.image_size,
                                run.flow.channels, False)
      images = np.stack([source[i] for i in range(min(test_images, len(source)))])
    return cls(run.flow, run.params, images, **options)

  # ------------------------------------------------------------------ what it shows
  def describe(self) -> dict:
    """What the page needs to lay itself out."""
    flow = self.flow
    return {"image_size": flow.image_size, "channels": flow.channels,
            "num_levels": flow.num_levels, "level_of_site": flow.level_of_site().tolist(),
            "test_images": len(self.test_images)}

  @staticmethod
  def compiles() -> int:
    """Backend compilations in this process so far."""
    return _CompileCounter.count

  def view(self, key) -> View:
    with self._lock:
      if key not in self.views:
        raise ExplorerError(f"no image {key!r} on show (it was forgotten or never opened): "
                            "open an image again")
      self.views.move_to_end(key)
      return self.views[key]

  def _add(self, z, source: str, image=None) -> View:
    z = jax.device_put(np.asarray(z, self.dtype), self.device)
    if image is None:
      image = np.asarray(_decode_uint8(self.flow, self.params, z)[0])
    with self._lock:
      key = f"v{next(self._keys)}"
      self.views[key] = View(key, z, image, source)
      while len(self.views) > MAX_VIEWS:
        self.views.popitem(last=False)
      return self.views[key]

  # ------------------------------------------------------------------ opening images
  def open_image(self, image_uint8, source: str) -> View:
    """A view of a uint8 image (L, L, C): its latents are its encoding."""
    image = np.asarray(image_uint8, np.uint8)
    y, _ = pixels.to_flow(jnp.asarray(pixels.from_uint8(image[None]), self.dtype))
    z, _ = encode_jit(self.flow, self.params, y)
    return self._add(z, source, image)

  def open_test(self, index: int) -> View:
    n = len(self.test_images)
    if not isinstance(index, int) or not 0 <= index < n:
      raise ExplorerError(f"test image {index!r} does not exist: choose 0 .. {n - 1}"
                          if n else "this explorer has no test images")
    return self.open_image(self.test_images[index], f"test image {index}")

  def open_sample(self, temperature: float, seed: int) -> View:
    if not 0.0 <= float(temperature) <= 2.0:
      raise ExplorerError(f"temperature must be in 0 .. 2, got {temperature}")
    z = self.flow.sample_latents(jax.random.PRNGKey(int(seed)), 1, float(temperature),
                                 self.dtype)
    return self._add(z, f"sample (T = {float(temperature):g}, seed {int(seed)})")

  def open_png(self, data: bytes) -> View:
    """An uploaded PNG of the model's size (grey or colour as the model is)."""
    L, C = self.flow.image_size, self.flow.channels
    if len(data) > MAX_UPLOAD_BYTES:
      raise ExplorerError(f"the file is {len(data) >> 10} KiB; uploads are limited to "
                          f"{MAX_UPLOAD_BYTES >> 20} MiB")
    try:
      img = Image.open(io.BytesIO(data))
      img.load()
    except Exception as e:  # noqa: BLE001 (PIL raises many kinds for a bad file)
      raise ExplorerError(f"not an image PIL can read ({type(e).__name__}): upload a PNG"
                          ) from None
    if img.format != "PNG":
      raise ExplorerError(f"the file is a {img.format}, not a PNG: upload a PNG")
    if img.size != (L, L):
      raise ExplorerError(f"the PNG is {img.size[0]} x {img.size[1]} pixels; this model "
                          f"takes {L} x {L}: resize it first")
    array = np.asarray(img.convert("L" if C == 1 else "RGB"), np.uint8)
    return self.open_image(array.reshape(L, L, C), "upload")

  # ------------------------------------------------------------------ latents
  def _check_latent(self, i, j, c=0):
    L, C = self.flow.image_size, self.flow.channels
    if not all(isinstance(v, int) for v in (i, j, c)) or not (
        0 <= i < L and 0 <= j < L and 0 <= c < C):
      raise ExplorerError(f"latent ({i}, {j}, {c}) is outside the {L} x {L} x {C} latents")

  def receptive_field(self, i: int, j: int, c: int) -> np.ndarray:
    """(L, L) receptive field of latent (i, j, c) (paper eq. 14, ``rf_samples`` prior
    draws from PRNGKey(0): :func:`rgflow_jax.receptive_field`'s defaults)."""
    self._check_latent(i, j, c)
    if (i, j, c) not in self._fields:
      self._fields[i, j, c] = np.asarray(receptive.receptive_fields(
          self.flow, self.params, [(i, j, c)], None, self.rf_samples)[0])
      while len(self._fields) > MAX_FIELDS:
        self._fields.popitem(last=False)
    return self._fields[i, j, c]

  def _cone(self, i, j) -> local.Cone:
    if (i, j) not in self._cones:
      self._cones[i, j] = local.Cone.for_latent_site(self.flow, i, j)
    return self._cones[i, j]

  def cone_mask(self, i: int, j: int) -> np.ndarray:
    """(L, L) bool: the pixels an edit of site (i, j) recomputes."""
    self._check_latent(i, j)
    L = self.flow.image_size
    out = np.asarray(self._cone(i, j).out_sites)
    mask = np.zeros(L * L, bool)
    mask[out[out < L * L]] = True
    return mask.reshape(L, L)

  def select(self, key: str, i: int, j: int):
    """Cache the decode of view ``key`` for edits of site (i, j): its one full decode."""
    self._check_latent(i, j)
    view = self.view(key)
    with self._lock:
      if self._selected is None or self._selected[:3] != (key, i, j):
        cone = self._cone(i, j)
        cache = local.cache_decode(self.flow, self.params, cone, view.z)
        self._selected = (key, i, j, cone, cache)
      return self._selected

  def edit(self, key: str, i: int, j: int, c: int, value: float) -> View:
    """View ``key`` with latent (i, j, c) set to ``value``; only the site's generation
    cone is decoded again."""
    self._check_latent(i, j, c)
    value = float(value)
    if not np.isfinite(value) or abs(value) > 50:
      raise ExplorerError(f"a latent value must be finite and within +-50, got {value}")
    with self._lock:
      _, _, _, cone, cache = self.select(key, i, j)
      view = self.view(key)
      view.z, image = _edit_uint8(self.flow, self.prepared, cone, cache, view.z,
                                  np.array([i, j, c], np.int32), np.asarray(value, self.dtype))
      view.image = np.asarray(image[0])
      return view

  def mix(self, key_a: str, key_b: str, levels_from_a) -> View:
    """A new view: A's latents at the levels in ``levels_from_a``, B's at the others
    (eq. 15 with a choice per level)."""
    levels = sorted({int(h) for h in levels_from_a})
    if any(not 0 <= h < self.flow.num_levels for h in levels):
      raise ExplorerError(f"levels must be in 0 .. {self.flow.num_levels - 1}, got {levels}")
    a, b = self.view(key_a), self.view(key_b)
    z = jnp.where(level_mask(self.flow, levels), a.z, b.z)
    return self._add(z, f"mix: levels {levels or 'none'} of {key_a}, the rest of {key_b}")

  # ------------------------------------------------------------------ inpainting
  def start_inpaint(self, key: str, mask, seed: int = 0) -> Job:
    """Inpaint the masked pixels of view ``key`` (noise put there first, App. F) in a
    thread; poll the returned job. Its result: the new view and the PSNR of the
    region against the view's image."""
    L = self.flow.image_size
    mask = np.asarray(mask, bool)
    if mask.shape != (L, L) or not mask.any():
      raise ExplorerError(f"paint a mask on the image first (a {L} x {L} region, "
                          f"got {mask.sum() if mask.shape == (L, L) else mask.shape})")
    view = self.view(key)
    job = Job(f"j{next(self._keys)}", self.inpaint_steps)
    with self._lock:
      finished = [k for k, j in self.jobs.items() if j.state != "running"]
      for k in finished[:max(0, len(finished) - MAX_JOBS + 1)]:
        del self.jobs[k]
      self.jobs[job.key] = job
    threading.Thread(target=self._inpaint, args=(job, view.key, view.image.copy(), mask,
                                                 seed), daemon=True,
                     name="rgflow-explore-inpaint").start()
    return job

  def _inpaint(self, job: Job, key: str, image, mask, seed: int):
    try:
      truth = pixels.from_uint8(image)
      noise = np.random.default_rng(seed).uniform(size=truth.shape).astype(np.float32)
      corrupted = np.where(mask[..., None], noise, truth)
      x, info = inpainting.inpaint(self.flow, self.params, corrupted, mask,
                                   jax.random.PRNGKey(seed), self.inpaint_starts,
                                   self.inpaint_steps, truth=truth, on_step=job.step)
      # Its image is the paper's: the generated region pasted into the input.
      new = self._add(info["z"][None], f"inpainting of {key}", pixels.to_uint8_numpy(x))
      job.result = {"view": new.key, "psnr": info["psnr"],
                    "psnr_corrupted": inpainting.psnr(corrupted, truth, mask[..., None]),
                    "free_latents": info["free_latents"]}
      job.state = "done"
    except Exception as e:  # noqa: BLE001 (reported to the page, the server goes on)
      job.error, job.state = f"{type(e).__name__}: {e}".splitlines()[0], "failed"

  def job(self, key: str) -> Job:
    if key not in self.jobs:
      raise ExplorerError(f"no job {key!r}")
    return self.jobs[key]

  # ------------------------------------------------------------------ start and files
  def warm_up(self) -> float:
    """Compile every program the requests run (encode, decode, the edit path, a
    receptive field); returns the seconds it took."""
    t0 = time.perf_counter()
    view = self.open_sample(1.0, 0)
    levels = self.flow.level_of_site()
    for level in range(self.flow.num_levels):  # an edit program per level
      i, j = np.argwhere(levels == level)[0]
      fresh = self.open_sample(1.0, level)
      self.edit(fresh.key, int(i), int(j), 0, 0.5)
      self.edit(fresh.key, int(i), int(j), 0, -0.5)
    other = self.open_image(view.image, "warm-up")
    self.edit(other.key, 0, 0, 0, 0.5)
    self.mix(view.key, other.key, [0])
    self.receptive_field(0, 0, 0)
    with self._lock:
      self.views.clear()
      self._selected = None
    return time.perf_counter() - t0

  def npz_bytes(self, key: str) -> bytes:
    """View ``key`` as an .npz: its image (uint8) and latents (float32), each level's
    mask of latent sites."""
    view = self.view(key)
    buf = io.BytesIO()
    np.savez(buf, image=view.image, latents=np.asarray(view.z, np.float32)[0],
             level_of_site=self.flow.level_of_site())
    return buf.getvalue()


def png_bytes(image_uint8) -> bytes:
  """A uint8 image (L, L, C) as PNG bytes."""
  image = np.asarray(image_uint8)
  buf = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, "PNG")
  return buf.getvalue()
