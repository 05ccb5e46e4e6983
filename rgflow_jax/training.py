"""Training: ``train_and_evaluate(config, workdir)``, the library behind train.py.

One jitted, pure step (state, batch) -> (state, metrics) with an optax AdamW chain
and global-norm clipping; data parallel over every device with a ``jax.make_mesh``
mesh and ``NamedSharding`` (the global batch split across devices and processes);
Orbax checkpoints every ``ckpt_every`` steps and on SIGTERM/SIGINT, with the data
pipeline's position; automatic resume; metrics.jsonl, sample grids and test bits/dim
while it runs. A non-finite loss or gradient skips the update; ``max_nonfinite`` in
a row stop the run with the last good checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rgflow_jax import checkpoint, data, models, pixels, plots
from rgflow_jax.metrics import MetricsLog

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
  """The run cannot go on; the message says why and what to do."""


# ------------------------------------------------------------------- building
def build_model(config):
  """The flow named by ``config.model.name`` ('rgflow' or 'realnvp')."""
  return models.build(config.model)


def param_dtype(config):
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  if config.dtype == "float64" and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
  return jnp.dtype(config.dtype)


def make_schedule(config):
  lr, warmup, steps = config.lr, config.warmup_steps, config.num_steps
  if config.schedule == "constant":
    if warmup:
      return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                   optax.constant_schedule(lr)], [warmup])
    return lr
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1),
                                              end_value=lr * config.get("final_lr_frac", 0.0))
  raise ValueError(f"config.schedule must be 'constant' or 'cosine', got {config.schedule!r}")


def make_optimizer(config):
  return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(make_schedule(config), weight_decay=config.weight_decay))


def validate_config(config):
  """Plain one-line errors for values that would otherwise fail deep inside JAX."""
  checks = [
      (config.batch_size >= 1, "config.batch_size must be >= 1"),
      (config.num_steps >= 1, "config.num_steps must be >= 1"),
      (config.lr > 0 and math.isfinite(config.lr), "config.lr must be a positive number"),
      (config.weight_decay >= 0, "config.weight_decay must be >= 0"),
      (config.grad_clip > 0, "config.grad_clip must be > 0"),
      (config.warmup_steps >= 0, "config.warmup_steps must be >= 0"),
      (config.ckpt_every >= 1, "config.ckpt_every must be >= 1"),
      (config.eval_every >= 1, "config.eval_every must be >= 1"),
      (config.log_every >= 1, "config.log_every must be >= 1"),
      (config.eval_batch_size >= 1, "config.eval_batch_size must be >= 1"),
      (config.max_nonfinite >= 1, "config.max_nonfinite must be >= 1"),
  ]
  for ok, msg in checks:
    if not ok:
      raise ValueError(msg)


# ----------------------------------------------------------------- the step
def init_state(flow, config, dtype):
  rng = jax.random.PRNGKey(config.seed)
  params = flow.init(jax.random.fold_in(rng, 0), dtype)
  opt_state = make_optimizer(config).init(params)
  return {"params": params, "opt_state": opt_state,
          "step": jnp.zeros((), jnp.int32), "rng": jax.random.fold_in(rng, 1)}


def make_train_step(flow, optimizer, mesh):
  """The jitted step: (state, uint8 batch) -> (state, metrics); state donated.

  An RG-Flow whose ``hand_backward`` is None (auto) gets its hand-written backward pass
  here: the step only takes reverse-mode gradients.
  """
  if getattr(flow, "hand_backward", False) is None:
    flow = dataclasses.replace(flow, hand_backward=True)

  def loss_fn(params, batch, rng):
    return jnp.mean(flow.bits_per_dim(params, batch, rng))

  def step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {"params": keep(params, state["params"]),
                 "opt_state": keep(opt_state, state["opt_state"]),
                 "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, {"train_bpd": loss, "grad_norm": grad_norm, "finite": finite}

  replicated = NamedSharding(mesh, P())
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated))


def make_eval_step(flow, mesh):
  """Sum of per-image bits/dim over the rows where ``weight`` is 1 (padding is 0)."""

  def step(params, batch, weight, rng):
    return jnp.sum(flow.bits_per_dim(params, batch, rng) * weight)

  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  return jax.jit(step, in_shardings=(replicated, rows, rows, replicated),
                 out_shardings=replicated)


def make_mesh():
  # Auto axes: the model's reshapes stay sharding-agnostic and XLA propagates the
  # batch sharding through them (Explicit axes would ask for out_sharding on each).
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def global_batch(local: np.ndarray, mesh) -> jax.Array:
  """This process's rows -> one array sharded over every device of every process."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)


def evaluate_bpd(flow, params, batches, mesh, rng, eval_step=None) -> tuple[float, int]:
  """(mean test bits/dim, images) over ``batches``, padded to a multiple of the devices."""
  eval_step = eval_step or make_eval_step(flow, mesh)
  total, count, size = 0.0, 0, None
  for i, batch in enumerate(batches):
    batch = np.asarray(batch)
    size = size or -(-len(batch) // jax.local_device_count()) * jax.local_device_count()
    weight = np.zeros(size, np.float32)
    weight[:len(batch)] = 1.0
    if len(batch) < size:
      batch = np.concatenate([batch, np.zeros((size - len(batch),) + batch.shape[1:],
                                              batch.dtype)])
    total += float(eval_step(params, global_batch(batch, mesh),
                             global_batch(weight, mesh), jax.random.fold_in(rng, i)))
    count += int(weight.sum())
  count = count * jax.process_count()
  return total / max(count, 1), count


# ------------------------------------------------------------------ helpers
class StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.received = None
    if threading.current_thread() is threading.main_thread():
      self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    else:
      self._old = {}

  def _handle(self, signum, frame):
    self.received = signal.Signals(signum).name

  def restore(self):
    for s, h in self._old.items():
      signal.signal(s, h)


MODEL_KEYS_THAT_MATTER = ("model", "dtype")


def check_resume_compatible(workdir: Path, config):
  saved_path = workdir / "config.json"
  if not saved_path.exists():
    return
  saved = json.loads(saved_path.read_text())
  now = json.loads(config.to_json())
  for key in MODEL_KEYS_THAT_MATTER:
    if saved.get(key) != now.get(key):
      raise TrainingError(
          f"{workdir} holds a run with a different config.{key} "
          f"({saved.get(key)} there, {now.get(key)} now): resume it with its own "
          f"config ({saved_path}) or train in a new --workdir")


def reference_curves(config) -> dict:
  refs = config.get("reference_curve", {}) or {}
  return {label: (list(c["minutes"]), list(c["bpd"])) for label, c in refs.items()}


# --------------------------------------------------------------------- main
def train_and_evaluate(config, workdir) -> dict:
  """Train ``config`` in ``workdir``, resuming from its latest checkpoint if any.

  Returns a summary dict (final step, last train and test bits/dim, skipped steps,
  why it stopped).
  """
  validate_config(config)
  if config.get("distributed", False):
    jax.distributed.initialize()
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  dtype = param_dtype(config)
  flow = build_model(config)
  mesh = make_mesh()
  n_proc, proc = jax.process_count(), jax.process_index()
  if config.batch_size % jax.device_count():
    raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the "
                     f"{jax.device_count()} devices")
  local_batch = config.batch_size // n_proc

  train_src = data.make_source(config.data, "train", flow.image_size, config.progress)
  test_src = data.make_source(config.data, "test", flow.image_size, config.progress)
  for src in (train_src, test_src):
    data.check_source_shape(src, flow.image_size, flow.channels)
  batches = data.train_batches(train_src, local_batch, config.data.seed + config.seed,
                               config.data.flip, proc, n_proc)

  ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
  state = init_state(flow, config, dtype)
  resume_step = ckpts.latest_step()
  meta = {"skipped_steps": 0, "best_test_bpd": None}
  if resume_step is not None:
    check_resume_compatible(workdir, config)
    state, meta = ckpts.restore(state, resume_step)
    batches.set_state(meta.pop("data_state"))
    log.info("resumed from step %d in %s", resume_step, workdir)
  if proc == 0:
    checkpoint.save_json_atomic(workdir / "config.json", json.loads(config.to_json()))
  metrics_log = MetricsLog(workdir, resume_step)

  replicated = NamedSharding(mesh, P())
  state = jax.device_put(state, replicated)
  train_step = make_train_step(flow, make_optimizer(config), mesh)
  eval_step = make_eval_step(flow, mesh)
  sample_fn = jax.jit(lambda p, r: flow.sample(p, r, config.num_samples,
                                               config.sample_temperature))
  eval_rng = jax.random.PRNGKey(config.seed + 12345)

  def test_bpd(params):
    ev = data.eval_batches(test_src, max(config.eval_batch_size // n_proc, 1),
                           config.eval_images, proc, n_proc)
    return evaluate_bpd(flow, params, ev, mesh, eval_rng, eval_step)[0]

  def save(step, test=None):
    meta_out = dict(meta, data_state=batches.get_state(), step=step)
    ckpts.save(step, state, meta_out, test)

  step = int(state["step"])
  start_step, start_time = step, time.perf_counter()
  minutes0 = metrics_log.offset_minutes
  stop = StopSignal()
  bar = None
  if config.progress and proc == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=config.num_steps, initial=step, desc="train", unit="step",
               dynamic_ncols=True)
  nonfinite_run, reason, last = 0, "num_steps", {}
  window_start, window_steps = time.perf_counter(), 0
  try:
    while step < config.num_steps:
      batch = global_batch(np.asarray(next(batches)), mesh)
      state, m = train_step(state, batch)
      step += 1
      window_steps += 1
      finite = bool(m["finite"])
      if finite:
        nonfinite_run = 0
      else:
        nonfinite_run += 1
        meta["skipped_steps"] = meta.get("skipped_steps", 0) + 1
        log.warning("step %d: non-finite loss or gradient, update skipped", step)
        if nonfinite_run >= config.max_nonfinite:
          reason = "nonfinite"
          raise TrainingError(
              f"stopped at step {step}: {nonfinite_run} non-finite losses or gradients "
              f"in a row; the last good checkpoint (step {ckpts.latest_step()}) is intact "
              f"in {workdir}/checkpoints. Lower config.lr or check the data.")
      minutes = minutes0 + (time.perf_counter() - start_time) / 60.0
      if step % config.log_every == 0 or step == config.num_steps:
        dt = time.perf_counter() - window_start
        last = {"step": step, "minutes": round(minutes, 4),
                "train_bpd": float(m["train_bpd"]), "grad_norm": float(m["grad_norm"]),
                "steps_per_s": window_steps / dt, "images_per_s": window_steps * config.batch_size / dt,
                "skipped_steps": meta.get("skipped_steps", 0)}
        window_start, window_steps = time.perf_counter(), 0
        metrics_log.write(last)
        if bar is not None:
          bar.set_postfix(bpd=f"{last['train_bpd']:.3f}", refresh=False)
      if bar is not None:
        bar.update(1)
      test = None
      out_of_time = bool(config.time_limit_s) and \
          time.perf_counter() - start_time > config.time_limit_s
      if step % config.eval_every == 0 or step == config.num_steps or out_of_time:
        test = test_bpd(state["params"])
        best = meta.get("best_test_bpd")
        meta["best_test_bpd"] = test if best is None else min(best, test)
        metrics_log.write({"step": step, "minutes": round(minutes, 4), "test_bpd": test})
        if bar is not None:
          bar.write(f"step {step}: test bits/dim {test:.4f}")
      if config.sample_every and step % config.sample_every == 0 and proc == 0:
        imgs = pixels.to_uint8(sample_fn(state["params"], jax.random.fold_in(eval_rng, step)))
        plots.save_grid(np.asarray(imgs), workdir / "samples" / f"step{step:07d}.png")
      if step % config.ckpt_every == 0 or test is not None or stop.received or out_of_time:
        save(step, test)
      if stop.received:
        reason = stop.received
        break
      if out_of_time:
        reason = "time_limit"
        break
    if step == config.num_steps and ckpts.latest_step() != step:
      save(step)
  finally:
    ckpts.wait()
    ckpts.close()
    metrics_log.close()
    stop.restore()
    if bar is not None:
      bar.close()
  if proc == 0:
    plots.plot_bpd_curve(workdir / "metrics.jsonl", workdir / "bpd_curve.png",
                         reference_curves(config))
  summary = {"step": step, "steps_this_run": step - start_step, "stopped_by": reason,
             "train_bpd": last.get("train_bpd"), "best_test_bpd": meta.get("best_test_bpd"),
             "skipped_steps": meta.get("skipped_steps", 0)}
  log.info("finished: %s", summary)
  return summary
