"""Training: ``train_and_evaluate(config, workdir)``, the library behind train.py.

One jitted, pure step (state, batch) -> (state, metrics) with an optax AdamW chain
and global-norm clipping; data parallel over every device with a ``jax.make_mesh``
mesh and ``NamedSharding`` (the global batch split across devices and processes);
Orbax checkpoints every ``ckpt_every`` steps and on SIGTERM/SIGINT, with the data
pipeline's position; automatic resume; metrics.jsonl, sample grids and test bits/dim
while it runs. A non-finite loss or gradient skips the update; ``max_nonfinite`` in
a row stop the run with the last good checkpoint intact.

The loop never waits on the device between its sync points: each step's metrics are
folded on the device into one small vector (:data:`WINDOW`) that is read back only
when the loop logs, evaluates, samples, saves or stops, and the next batches are
already on the device when a step is dispatched (:class:`DevicePrefetch`). The NaN
guard itself runs on the device, every step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rgflow_jax import (checkpoint, data, execution, models, multihost, pixels, plots,
                        runlock, storage)
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
      (config.keep_checkpoints >= 1, "config.keep_checkpoints must be >= 1 (the run "
       "resumes from its latest checkpoint)"),
      (config.eval_images >= 1, "config.eval_images must be >= 1 (test bits/dim of no "
       "image would rank as the best)"),
      (config.sample_every >= 0, "config.sample_every must be >= 0 (0: no sample grids)"),
      (config.num_samples >= 1 or not config.sample_every,
       "config.num_samples must be >= 1, or set config.sample_every=0"),
      (config.time_limit_s >= 0 and math.isfinite(config.time_limit_s),
       "config.time_limit_s must be >= 0 (0: no limit)"),
      (config.get("heartbeat_timeout_s", 1) >= 1 and config.get("init_timeout_s", 1) >= 1,
       "config.heartbeat_timeout_s and config.init_timeout_s must be >= 1 (seconds)"),
      (config.get("lock_lease_s", 1.0) >= 1 and math.isfinite(config.get("lock_lease_s", 1.0)),
       "config.lock_lease_s must be >= 1 (seconds a remote run lock lasts unrenewed)"),
      (config.get("matmul_precision", "default") in MATMUL_PRECISIONS,
       f"config.matmul_precision must be one of {MATMUL_PRECISIONS}"),
  ]
  for ok, msg in checks:
    if not ok:
      raise ValueError(msg)
  execution.Execution.from_config(config)  # its own one-line errors


# float32 matrix products on accelerators: 'default' is the platform's fast mode (one
# bfloat16 pass on TPU, TF32 on recent NVIDIA GPUs), 'high' three bf16 passes on TPU,
# 'highest' full float32. CPUs compute float32 in full whatever the setting.
MATMUL_PRECISIONS = ("default", "high", "highest")
EVAL_PRECISION = "highest"  # test bits/dim, samples and round trips, whatever training uses


def _with_precision(fn, precision):
  """``fn`` traced under a default matmul precision (None: JAX's own default)."""
  if precision is None:
    return fn

  def wrapped(*args):
    with jax.default_matmul_precision(precision):
      return fn(*args)
  return wrapped


# ----------------------------------------------------------------- the step
def init_state(flow, config, dtype, params=None):
  """A fresh train state: ``params`` (default: ``flow.init`` from the seed) with a new
  optimizer state, step 0 and the run's rng."""
  rng = jax.random.PRNGKey(config.seed)
  if params is None:
    params = flow.init(jax.random.fold_in(rng, 0), dtype)
  opt_state = make_optimizer(config).init(params)
  return {"params": params, "opt_state": opt_state,
          "step": jnp.zeros((), jnp.int32), "rng": jax.random.fold_in(rng, 1)}


def _train_step_fn(flow, optimizer, ex):
  """The pure step (state, uint8 batch) -> (state, metrics), computed as ``ex`` says."""

  def loss_fn(params, batch, rng):
    return jnp.mean(flow.bits_per_dim(params, batch, rng, ex))

  def step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, rng)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    # The guard: a finite loss and gradient, and parameters that stay finite after the
    # update (a huge learning rate can overflow them from a finite gradient).
    params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p))
                                       for p in jax.tree.leaves(params)]))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & params_finite
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {"params": keep(params, state["params"]),
                 "opt_state": keep(opt_state, state["opt_state"]),
                 "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, {"train_bpd": loss, "grad_norm": grad_norm, "finite": finite}

  return step


def make_train_step(flow, optimizer, mesh, precision: str | None = None,
                    ex: execution.Execution = execution.TRAINING):
  """The jitted step: (state, uint8 batch) -> (state, metrics); state donated. ``ex``:
  how the model is computed (default: with the hand-written backward pass)."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(_with_precision(_train_step_fn(flow, optimizer, ex), precision),
                 donate_argnums=0, in_shardings=(replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated))


# What the loop reads back at its sync points, kept on the device as one float32 vector
# (one transfer): steps and finite steps since the last log row, the sums of their
# bits/dim and gradient norms, the current run of non-finite steps and its first step.
WINDOW = ("steps", "finite_steps", "bpd_sum", "grad_norm_sum", "nonfinite_run", "run_start")


def new_window(mesh, nonfinite_run: float = 0.0, run_start: float = 0.0) -> jax.Array:
  w = np.zeros(len(WINDOW), np.float32)
  w[WINDOW.index("nonfinite_run")], w[WINDOW.index("run_start")] = nonfinite_run, run_start
  return jax.device_put(w, NamedSharding(mesh, P()))


def _fold_into_window(window, m, step):
  steps, finite_steps, bpd_sum, grad_sum, run, run_start = (window[i] for i in range(6))
  ok = m["finite"]
  zero = jnp.zeros((), jnp.float32)
  return jnp.stack([
      steps + 1, finite_steps + ok,
      bpd_sum + jnp.where(ok, m["train_bpd"].astype(jnp.float32), zero),
      grad_sum + jnp.where(ok, m["grad_norm"].astype(jnp.float32), zero),
      jnp.where(ok, zero, run + 1),
      jnp.where(ok, zero, jnp.where(run == 0, step.astype(jnp.float32), run_start))])


def make_loop_step(flow, optimizer, mesh, precision: str | None = None,
                   ex: execution.Execution = execution.TRAINING):
  """The training loop's step: (state, window, batch) -> (state, window), both donated;
  the train step with its metrics folded into the window on the device."""
  inner = _train_step_fn(flow, optimizer, ex)

  def step(state, window, batch):
    state, m = inner(state, batch)
    return state, _fold_into_window(window, m, state["step"])

  replicated = NamedSharding(mesh, P())
  return jax.jit(_with_precision(step, precision), donate_argnums=(0, 1),
                 in_shardings=(replicated, replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated))


class DevicePrefetch:
  """The next ``depth`` global batches, already on the device, with the data
  pipeline's position after each (what a checkpoint must record is the position of
  the batches consumed, not of those read ahead)."""

  def __init__(self, batches, mesh, depth: int = 2):
    self.batches, self.mesh, self.depth = batches, mesh, depth
    self.queue = deque()
    self.consumed_state = batches.get_state()
    self.fill()

  def fill(self):
    while len(self.queue) < self.depth:
      local = np.asarray(next(self.batches))
      self.queue.append((global_batch(local, self.mesh), self.batches.get_state()))

  def next(self) -> jax.Array:
    if not self.queue:
      self.fill()
    batch, self.consumed_state = self.queue.popleft()
    return batch


def make_eval_step(flow, mesh, ex: execution.Execution = execution.DEFAULT):
  """(sum of per-image bits/dim, images) over the rows where ``weight`` is 1 (padding
  is 0), always at full float32 matmul precision."""
  ex = ex.for_evaluation()

  def step(params, batch, weight, rng):
    return jnp.sum(flow.bits_per_dim(params, batch, rng, ex) * weight), jnp.sum(weight)

  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  return jax.jit(_with_precision(step, EVAL_PRECISION),
                 in_shardings=(replicated, rows, rows, replicated), out_shardings=replicated)


def make_mesh():
  # Auto axes: the model's reshapes stay sharding-agnostic and XLA propagates the
  # batch sharding through them (Explicit axes would ask for out_sharding on each).
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def global_batch(local: np.ndarray, mesh) -> jax.Array:
  """This process's rows -> one array sharded over every device of every process."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)


def eval_batch_size(requested: int) -> int:
  """The global evaluation batch: ``requested`` rounded up to a multiple of the devices."""
  return -(-max(requested, 1) // jax.device_count()) * jax.device_count()


def evaluate_bpd(flow, params, batches, mesh, rng, eval_step=None) -> tuple[float, int]:
  """(mean test bits/dim, images) over ``batches`` of :func:`data.eval_batches`: this
  process's (images, weights) rows of each global batch. Every process must call it;
  the sums are taken over the global batches, so the figure is the same for any number
  of processes, however unequal their shares."""
  eval_step = eval_step or make_eval_step(flow, mesh)
  sums = [eval_step(params, global_batch(images, mesh), global_batch(weights, mesh),
                    jax.random.fold_in(rng, i))
          for i, (images, weights) in enumerate(batches)]
  total, count = (float(np.sum(v)) for v in zip(*jax.device_get(sums))) if sums else (0, 0)
  if count == 0:
    raise ValueError("no test images to evaluate: the test set (or --max_images) is empty")
  return total / count, int(count)


# ------------------------------------------------------------------ helpers
class StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks after each step.

  With several processes SIGTERM is left to JAX's preemption notifier (it tells every
  process, which then stop together: :func:`multihost.preempted`), and Ctrl-C is passed
  on to it as a SIGTERM."""

  def __init__(self):
    self.received = None
    self._old = {}
    if threading.current_thread() is not threading.main_thread():
      return
    if jax.distributed.is_initialized():
      self._old = {signal.SIGINT: signal.signal(signal.SIGINT, self._forward)}
    else:
      self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

  def _handle(self, signum, frame):
    self.received = signal.Signals(signum).name

  @staticmethod
  def _forward(signum, frame):
    os.kill(os.getpid(), signal.SIGTERM)

  def restore(self):
    for s, h in self._old.items():
      signal.signal(s, h)


# What a resumed run must share with the run in its workdir. Everything else may change
# on resume (learning rate, num_steps, intervals, time limit, ...) and is logged.
MODEL_KEYS_THAT_MATTER = ("model", "dtype")
RESUME_KEYS_THAT_MATTER = MODEL_KEYS_THAT_MATTER + (
    "seed", "batch_size", "schedule", "warmup_steps", "final_lr_frac", "data")
# Free to differ even under those: how the model is executed (config.execution, and the
# same keys under config.model in runs saved before it existed), and where the data live.
EXECUTION_KEYS = tuple(f"model.{k}" for k in execution.FIELDS) + (
    "data.data_dir", "data.path", "data.test_path")
# Keys added after runs existed, and the value those runs had: a saved config.json that
# lacks one is read with it (where the current config has the key at all).
VALUES_BEFORE_KEY_EXISTED = {"model.layer_order": "paper"}


def _flat(tree: dict, prefix: str = "") -> dict:
  """A nested config dict as {"model.hidden": ..., "lr": ...}."""
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def check_resume_compatible(workdir, config, keys=RESUME_KEYS_THAT_MATTER):
  """Refuse, in one line, a config that differs from the saved run's in ``keys`` (the
  model, and for training also the seed, batch, schedule and data: a resumed run with
  another of these would silently be a different run); log the other changes."""
  saved_path = storage.as_path(workdir) / "config.json"
  if not saved_path.exists():
    return
  saved, now = _flat(storage.read_json(saved_path)), _flat(json.loads(config.to_json()))
  for key, value in VALUES_BEFORE_KEY_EXISTED.items():
    if key in now:
      saved.setdefault(key, value)
  changed = sorted(k for k in set(saved) | set(now)
                   if saved.get(k) != now.get(k) and k not in EXECUTION_KEYS
                   and not k.startswith("execution."))
  for key in changed:
    if key.split(".")[0] in keys:
      raise TrainingError(
          f"{workdir} holds a run with a different config.{key} ({saved.get(key)} there, "
          f"{now.get(key)} now): resume it with its own config ({saved_path}) or train "
          "in a new --workdir")
  if changed:
    log.warning("resuming %s with changed settings: %s", workdir,
                ", ".join(f"{k} {saved.get(k)} -> {now.get(k)}" for k in changed))


def reference_curves(config) -> dict:
  refs = config.get("reference_curve", {}) or {}
  return {label: (list(c["minutes"]), list(c["bpd"])) for label, c in refs.items()}


# --------------------------------------------------------------------- main
def use_compilation_cache(config):
  """JAX's persistent compilation cache in ``config.compilation_cache_dir`` (local or
  gs://), if set: a restarted run or a second run of one config skips compiling."""
  cache_dir = config.get("compilation_cache_dir", "")
  if cache_dir and jax.config.jax_compilation_cache_dir != cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))


class _WindowReader:
  """Host side of :data:`WINDOW`: reads it at the loop's sync points, keeps the skipped
  count and the rows' means, and starts a new window after each log row."""

  def __init__(self, mesh, skipped: int):
    self.mesh, self.skipped_before = mesh, skipped
    self.values = dict.fromkeys(WINDOW, 0.0)

  def read(self, window) -> dict:
    self.values = dict(zip(WINDOW, (float(v) for v in jax.device_get(window)), strict=True))
    return self.values

  @property
  def skipped(self) -> int:
    return self.skipped_before + int(self.values["steps"] - self.values["finite_steps"])

  def row(self) -> dict:
    v = self.values
    n = v["finite_steps"]
    return {"train_bpd": v["bpd_sum"] / n if n else float("nan"),
            "grad_norm": v["grad_norm_sum"] / n if n else float("nan"),
            "skipped_steps": self.skipped}

  def restart(self):
    """A fresh window on the device that carries the current non-finite run on."""
    self.skipped_before = self.skipped
    run, start = self.values["nonfinite_run"], self.values["run_start"]
    self.values = dict.fromkeys(WINDOW, 0.0)
    self.values.update(nonfinite_run=run, run_start=start)
    return new_window(self.mesh, run, start)


def train_and_evaluate(config, workdir) -> dict:
  """Train ``config`` in ``workdir``, resuming from its latest checkpoint if any.

  ``workdir`` may be local or an object-store URL (``gs://bucket/run``). Returns a
  summary dict (final step, last train and test bits/dim, skipped steps, why it
  stopped).
  """
  validate_config(config)
  try:
    multihost.initialize(config)
  except multihost.DistributedError as e:
    raise TrainingError(str(e)) from None
  workdir = storage.check_writable(workdir, "workdir")
  with contextlib.ExitStack() as stack:
    lock, refused = None, None
    if jax.process_index() == 0:  # one lock for the run; the others learn the outcome
      try:
        lock = stack.enter_context(runlock.RunLock(
            workdir, config.get("lock_lease_s", runlock.DEFAULT_LEASE_S)))
      except runlock.RunLocked as e:
        refused = str(e)
    if multihost.any_process(refused is not None):
      raise TrainingError(refused or "process 0 could not lock the workdir (see its log)")
    try:
      return _train(config, workdir, lock)
    except runlock.RunLocked as e:
      raise TrainingError(str(e)) from None


def _train(config, workdir, lock=None) -> dict:
  use_compilation_cache(config)
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
  replicated = NamedSharding(mesh, P())
  # Replicated over every device of every process before a restore, which then reads
  # straight into that layout (a restored array is committed to one device, and moving
  # it across hosts afterwards is a transfer CPU and GPU clients cannot make).
  state = jax.device_put(init_state(flow, config, dtype), replicated)
  resume_step = None
  meta = {"skipped_steps": 0, "best_test_bpd": None}
  if ckpts.latest_step() is not None:
    check_resume_compatible(workdir, config)
    try:  # the newest checkpoint that restores intact; damaged ones are set aside
      state, meta, resume_step = ckpts.restore_newest_intact(state)
    except FileNotFoundError as e:
      raise TrainingError(f"{e}: train in a new --workdir, or move a checkpoint back "
                          "from there if you know it is good") from None
    ckpts.complete_best(resume_step, state, meta)
    data_state = meta.pop("data_state", None)
    if data_state is not None:  # None: an imported model, trained elsewhere
      batches.set_state(data_state)
    log.info("resumed from step %d in %s", resume_step, workdir)
  if proc == 0:
    storage.write_json_atomic(workdir / "config.json", json.loads(config.to_json()))
  metrics_log = MetricsLog(workdir, resume_step)

  ex = execution.Execution.from_config(config, training=True)
  loop_step = make_loop_step(flow, make_optimizer(config), mesh,
                             config.get("matmul_precision", "default"), ex)
  eval_step = make_eval_step(flow, mesh, ex)
  sample_fn = jax.jit(_with_precision(
      lambda p, r: flow.sample(p, r, config.num_samples, config.sample_temperature,
                               ex.for_evaluation()), EVAL_PRECISION))
  eval_rng = jax.random.PRNGKey(config.seed + 12345)

  def test_bpd(params):
    ev = data.eval_batches(test_src, eval_batch_size(config.eval_batch_size),
                           config.eval_images, proc, n_proc)
    return evaluate_bpd(flow, params, ev, mesh, eval_rng, eval_step)[0]

  step = int(state["step"])
  prefetch = DevicePrefetch(batches, mesh)
  reader = _WindowReader(mesh, meta.get("skipped_steps", 0))
  window = new_window(mesh)

  def save(step, test=None):
    if multihost.any_process(lock is not None and lock.lost):  # every process stops
      raise runlock.RunLocked(f"the lease on {workdir} was taken over by another trainer "
                              "while this run could not renew it: stopping, so that one "
                              "writer remains")
    meta_out = dict(meta, data_state=prefetch.consumed_state, step=step,
                    skipped_steps=reader.skipped)
    ckpts.save(step, state, meta_out, test)

  start_step, start_time = step, time.perf_counter()
  minutes0 = metrics_log.offset_minutes
  stop = StopSignal()
  bar = None
  if config.progress and proc == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=config.num_steps, initial=step, desc="train", unit="step",
               dynamic_ncols=True)
  reason, last = "num_steps", {}
  window_start, window_steps = time.perf_counter(), 0
  try:
    while step < config.num_steps:
      state, window = loop_step(state, window, prefetch.next())
      prefetch.fill()  # the host reads ahead while the device runs the step
      step += 1
      window_steps += 1
      if bar is not None:
        bar.update(1)
      log_now = step % config.log_every == 0 or step == config.num_steps
      # With several processes the clocks are compared at log steps only, which every
      # process visits, and agreed: one process alone must never take another branch.
      out_of_time = bool(config.time_limit_s) and (n_proc == 1 or log_now) and \
          multihost.any_process(time.perf_counter() - start_time > config.time_limit_s)
      if multihost.preempted(step):  # SIGTERM to any process: all stop at this step
        stop.received = "SIGTERM"
      eval_now = step % config.eval_every == 0 or step == config.num_steps or out_of_time
      sample_now = bool(config.sample_every) and step % config.sample_every == 0
      save_now = step % config.ckpt_every == 0 or eval_now or stop.received or out_of_time
      if not (log_now or sample_now or save_now):
        continue  # no read-back: the next step is dispatched while this one runs

      skipped_before = reader.skipped
      w = reader.read(window)
      if reader.skipped > skipped_before:
        log.warning("steps %d-%d: %d non-finite losses or gradients, updates skipped",
                    step - int(w["steps"]) + 1, step, reader.skipped - skipped_before)
      if w["nonfinite_run"] >= config.max_nonfinite:
        reason = "nonfinite"
        raise TrainingError(
            f"stopped at step {int(w['run_start']) + config.max_nonfinite - 1}: "
            f"{config.max_nonfinite} non-finite losses or gradients in a row; the last "
            f"good checkpoint (step {ckpts.latest_step()}) is intact in "
            f"{workdir}/checkpoints. Lower config.lr or check the data.")
      minutes = minutes0 + (time.perf_counter() - start_time) / 60.0
      if log_now:
        dt = time.perf_counter() - window_start
        last = {"step": step, "minutes": round(minutes, 4), **reader.row(),
                "steps_per_s": window_steps / dt,
                "images_per_s": window_steps * config.batch_size / dt}
        window = reader.restart()
        window_start, window_steps = time.perf_counter(), 0
        metrics_log.write(last)
        if bar is not None:
          bar.set_postfix(bpd=f"{last['train_bpd']:.3f}", refresh=False)
      test = None
      if eval_now:
        test = test_bpd(state["params"])
        best = meta.get("best_test_bpd")
        if math.isfinite(test):  # a NaN evaluation is never the best
          meta["best_test_bpd"] = test if best is None else min(best, test)
        else:
          log.warning("step %d: test bits/dim is %s; not a candidate for best/", step, test)
        metrics_log.write({"step": step, "minutes": round(minutes, 4), "test_bpd": test})
        if bar is not None:
          bar.write(f"step {step}: test bits/dim {test:.4f}")
      if sample_now:  # every process joins the computation; process 0 writes the file
        imgs = pixels.to_uint8(sample_fn(state["params"], jax.random.fold_in(eval_rng, step)))
        if proc == 0:
          plots.save_grid(np.asarray(jax.device_get(imgs)),
                          workdir / "samples" / f"step{step:07d}.png")
      if save_now:
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
             "skipped_steps": reader.skipped}
  log.info("finished: %s", summary)
  return summary
