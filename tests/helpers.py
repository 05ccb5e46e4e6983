"""Helpers shared by tests and by the scripts tests run in subprocesses: random
non-identity parameters, small models of each flow, the training step's gradient, local
inference's cases, the requirement files and the docs' code blocks."""

import copy
import functools
import hashlib
import importlib
import os
import re
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from packaging.requirements import Requirement

from rgflow_jax import RealNVP, RGFlow
from rgflow_jax.configs import base
from rgflow_jax.core import execution
from rgflow_jax.run import jit_steps

ROOT = Path(__file__).resolve().parents[1]  # the repository
FIXTURES = ROOT / "tests" / "fixtures"  # committed inputs of the tests


def step_gradient(flow, params, images, mesh, ex=execution.TRAINING) -> dict:
  """The loss and the gradient that the real training step computes (jitted, sharded,
  computed as ``ex`` says: by default with the hand-written backward pass): one step of
  SGD with learning rate 1 moves the parameters by exactly minus the gradient."""
  sgd = optax.sgd(1.0)
  params = jax.tree.map(jnp.copy, params)  # the step donates its state: the caller keeps its own
  state = {"params": params, "opt_state": sgd.init(params), "step": jnp.zeros((), jnp.int32),
           "rng": jax.random.PRNGKey(1)}
  step = jit_steps.make_train_step(flow, sgd, mesh, ex=ex)
  batch = jit_steps.global_batch(np.asarray(images), mesh)
  before = np.asarray(jax.flatten_util.ravel_pytree(params)[0], np.float64)
  new, metrics = step(state, batch)  # the state is donated: read it before
  after = np.asarray(jax.flatten_util.ravel_pytree(new["params"])[0], np.float64)
  return {"loss": float(metrics["train_bpd"]), "grad": (before - after).tolist()}


@functools.partial(jax.jit, static_argnums=2)
def perturb(params, rng, scale=0.2):
  """Random non-identity parameters: every leaf (the zero-init scales too) + noise."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  return unravel(flat + scale * jax.random.normal(rng, flat.shape, flat.dtype))


def tiny_flow(image_size=8, channels=1, block_size=4, **kw):
  kw = {"n_layers": 2, "n_res": 1, "hidden": 16, "mlp_depth": 1, **kw}
  return RGFlow(image_size=image_size, channels=channels, block_size=block_size, **kw)


def random_flow(image_size=8, channels=1, block_size=4, dtype=jnp.float32, seed=0, **kw):
  flow = tiny_flow(image_size, channels, block_size, **kw)
  params = perturb(flow.init(jax.random.PRNGKey(seed), dtype),
                   jax.random.PRNGKey(seed + 1))
  return flow, params


def tiny_realnvp(image_size=8, channels=1, **kw):
  kw = {"num_scales": 3 if image_size <= 16 else 4, "hidden": 8, "n_res": 1,
        "n_checker": 2, "n_channel": 2, **kw}
  return RealNVP(image_size=image_size, channels=channels, **kw)


# The model registry the shared bijection tests run over: name -> (factory, scale of
# the parameter perturbation that keeps the random flow well conditioned in float32).
MODEL_ZOO = {
    "rgflow": (tiny_flow, 0.2),
    "realnvp": (tiny_realnvp, 0.02),
}


def zoo_flow(name, image_size=8, channels=1, dtype=jnp.float32, seed=0, **kw):
  """(flow, random non-identity params) of a small model of the registry."""
  factory, scale = MODEL_ZOO[name]
  flow = factory(image_size, channels, **kw)
  params = perturb(flow.init(jax.random.PRNGKey(seed), dtype), jax.random.PRNGKey(seed + 1),
                   scale)
  return flow, params


def random_inception_weights(path) -> str:
  """An .npz of random weights of the real FID Inception (87 MB), for end-to-end runs of
  fid and Inception-PSNR; returns its path."""
  from rgflow_jax.paper import inception  # noqa: PLC0415
  np.savez(path, **inception.random_state(0))
  return str(path)


def square_region(L, top, left, size=10):
  """(L, L) bool: the size x size pixels at (top, left), wrapping around the edges."""
  region = np.zeros((L, L), bool)
  r, c = (top + np.arange(size)) % L, (left + np.arange(size)) % L
  region[np.ix_(r, c)] = True
  return region


# ------------------------------------------------------------- configs and runs
def load_config(name, variant="smoke"):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(variant)


def smoke_config(tmp_path, name="msds1", **overrides):
  """``name:smoke`` with its data under ``tmp_path``, and ``overrides``: dotted keys
  (``**{"train.test.every": 2}``), or a flat layout's name as shorthand for its key
  (``num_steps=4`` for ``train.num_steps``: ``base.MOVED_KEYS``)."""
  c = load_config(name)
  c.data.location.data_dir = str(tmp_path / "data")
  for key, value in overrides.items():
    target = c
    *path, leaf = base.MOVED_KEYS.get(key, key).split(".")
    for p in path:
      target = target[p]
    if leaf not in target:
      raise KeyError(f"no config key {key}")
    target[leaf] = value
  return c


def tensorboard_events(logdir):
  """TensorBoard's own reader over a logdir (scalars, images, plugin data)."""
  from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"images": 0,
                                                                      "scalars": 0})
  acc.Reload()
  return acc


# An 8 x 8 x 1 model (2 levels) with msds1:smoke's training settings: for tests of the
# jitted steps, which compile in seconds at this size.
UNIT_BATCH = (8, 8, 8, 1)

def run_eval(config, workdir, modes: str, settings: dict | None = None, **kwargs):
  """``evaluation.evaluate`` on a copy of ``config`` with ``config.eval.modes = modes``
  and ``settings`` (``{"bpd.draws": 1, ...}``, keys under ``config.eval``) set."""
  from rgflow_jax.run import evaluation, run_config  # noqa: PLC0415
  c = copy.deepcopy(config)
  run_config.with_overrides(c, {"eval.modes": modes,
                                **{f"eval.{k}": v for k, v in (settings or {}).items()}})
  return evaluation.evaluate(c, workdir, **kwargs)


def unit_config():
  c = load_config("msds1")
  c.model.image_size, c.model.channels = UNIT_BATCH[1], UNIT_BATCH[3]
  return c


# Local inference's cases: (L, C, layer order, region size, positions (top, left)):
CONE_CASES = [
    (16, 1, "paper", 3, [(0, 0), (14, 14), (5, 9)]),
    (16, 2, "authors", 4, [(13, 0), (6, 6)]),
    (32, 3, "paper", 10, [(0, 0), (27, 3), (11, 20)]),
    (32, 1, "authors", 10, [(30, 30), (4, 17)]),
]


def cone_case(L, C, order, seed=0):
  """A CONE_CASES flow (float64, random parameters) and an image (1, L, L, C) in (0, 1)."""
  flow, params = random_flow(L, C, 4, jnp.float64, seed=seed, layer_order=order,
                             hidden=8)
  rng = np.random.default_rng(seed)
  image = rng.uniform(0.02, 0.98, (1, L, L, C))
  return flow, params, image


def requirement_set(lines) -> set[tuple]:
  """(name, specifier, extras) of each requirement line, extras' own lines left out."""
  out = set()
  for line in lines:
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
      r = Requirement(line)
      if r.marker is None or "extra" not in str(r.marker):
        out.add((r.name.lower().replace("_", "-"), str(r.specifier), tuple(sorted(r.extras))))
  return out


def doc_python_blocks():
  """(file, number, code) of every ```python block of docs/*.md."""
  for path in sorted((ROOT / "docs").glob("*.md")):
    for number, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S)):
      yield path.name, number, code


def assert_gradients_close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert np.abs(want).max() > 1e-3  # a gradient worth comparing
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def data_section(name, **location):
  """A data section (config.data) of set ``name``, its location as given."""
  c = base.base_config().data
  c.name = name
  c.location.update({"data_dir": "/nonexistent-data", **location})
  return c


def file_digests(folder) -> dict:
  """sha256 of every file under ``folder`` by relative path, the run lock aside (each
  trainer writes its pid there)."""
  folder = Path(os.fspath(folder))
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".train.lock"}
