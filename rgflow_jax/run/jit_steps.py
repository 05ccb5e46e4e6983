"""The jitted pieces of training and evaluation: pure functions of their inputs.

- the optimizer (optax AdamW behind global-norm clipping, constant or cosine schedule)
  and a fresh train state {params, opt_state, step, rng};
- the training step (state, uint8 batch) -> (state, metrics): one value_and_grad of
  the mean bits/dim, the update, and a guard that keeps the old state when the loss,
  the gradient or the new parameters are not finite; and the loop's variant, which
  folds the metrics into one small on-device vector (:data:`WINDOW`);
- the evaluation step (sums of bits/dim over weighted rows, per dequantisation draw and
  importance-weighted over the draws) and the mesh: data parallel
  over every device of every process (``jax.make_mesh``, ``NamedSharding``), the global
  batch split along ``data``.

The training loop around them is :mod:`rgflow_jax.run.training`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rgflow_jax.core import execution


def make_schedule(config):
  lr, warmup, steps = config.lr, config.warmup_steps, config.num_steps
  if config.schedule == "constant":
    if warmup:
      return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                   optax.constant_schedule(lr)], [warmup])
    return lr
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1),
                                              end_value=lr * config.final_lr_frac)
  raise ValueError(f"config.schedule must be 'constant' or 'cosine', got {config.schedule!r}")


def make_optimizer(config):
  return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(make_schedule(config), weight_decay=config.weight_decay))


# float32 matrix products on accelerators: 'default' is the platform's fast mode (one
# bfloat16 pass on TPU, TF32 on recent NVIDIA GPUs), 'high' three bf16 passes on TPU,
# 'highest' full float32. CPUs compute float32 in full whatever the setting.
MATMUL_PRECISIONS = ("default", "high", "highest")
EVAL_PRECISION = "highest"  # test bits/dim, samples and round trips, whatever training uses


def with_precision(fn, precision):
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
  return jax.jit(with_precision(_train_step_fn(flow, optimizer, ex), precision),
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
  return jax.jit(with_precision(step, precision), donate_argnums=(0, 1),
                 in_shardings=(replicated, replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated))


def make_eval_step(flow, mesh, ex: execution.Execution = execution.DEFAULT):
  """Bits/dim of a batch for several dequantisation draws, always at full float32
  matmul precision.

  (params, uint8 batch, weight, draw_rngs (K, 2), batch index) -> {"draws": per-draw
  sums over the rows where ``weight`` is 1 (padding is 0), (K,); "iw": each row's
  importance-weighted estimate, (B,); "weight"}. The importance-weighted estimate of
  an image is -log2(mean_k p(x_k)) / D + 8 over its draws x_k = x + u_k (a
  log-mean-exp): the uniform dequantisation is the proposal, so it is a tighter upper
  bound on the discrete model's bits/dim than the single-draw mean, and equals it for
  one draw. Draw k of batch i is dequantised with ``fold_in(draw_rngs[k], i)``.
  """
  ex = ex.for_evaluation()
  nats_per_bpd = math.log(2.0) * flow.num_dims

  def step(params, batch, weight, draw_rngs, index):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(draw_rngs)
    bpd = jax.lax.map(lambda k: flow.bits_per_dim(params, batch, k, ex), keys)  # (K, B)
    log_mean = jax.nn.logsumexp(-bpd * nats_per_bpd, axis=0) - math.log(len(keys))
    return {"draws": jnp.sum(bpd * weight, axis=1), "iw": -log_mean / nats_per_bpd,
            "weight": weight}

  replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  return jax.jit(with_precision(step, EVAL_PRECISION),
                 in_shardings=(replicated, rows, rows, replicated, replicated),
                 out_shardings=replicated)


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


def evaluate_draws(flow, params, batches, mesh, draw_rngs, eval_step=None) -> dict:
  """Test bits/dim over ``batches`` of :func:`data.eval_batches` (this process's
  (images, weights) rows of each global batch) for each of ``draw_rngs``' draws:
  {"per_draw": mean of each draw, "iw": mean importance-weighted estimate, "iw_stderr":
  its standard error over images (None for one image), "images"}. Every process must
  call it; the step's outputs cover the global batches, so the figures are the same for
  any number of processes, however unequal their shares."""
  eval_step = eval_step or make_eval_step(flow, mesh)
  outs = jax.device_get([eval_step(params, global_batch(images, mesh),
                                   global_batch(weights, mesh), jnp.asarray(draw_rngs), i)
                         for i, (images, weights) in enumerate(batches)])
  n = int(sum(float(o["weight"].sum()) for o in outs))
  if n == 0:
    raise ValueError("no test images to evaluate: the test set (or --max_images) is empty")
  per_draw = np.sum([np.asarray(o["draws"], np.float64) for o in outs], axis=0) / n
  iw = np.concatenate([np.asarray(o["iw"], np.float64)[o["weight"] > 0] for o in outs])
  stderr = float(iw.std(ddof=1) / np.sqrt(n)) if n > 1 else None
  return {"per_draw": per_draw.tolist(), "iw": float(iw.mean()), "iw_stderr": stderr,
          "images": n}


def evaluate_bpd(flow, params, batches, mesh, rng, eval_step=None) -> tuple[float, int]:
  """(mean test bits/dim, images) of one dequantisation draw from ``rng``: what the
  training loop logs; see :func:`evaluate_draws`."""
  result = evaluate_draws(flow, params, batches, mesh, rng[None], eval_step)
  return result["per_draw"][0], result["images"]
