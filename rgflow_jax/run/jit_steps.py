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

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rgflow_jax.core import execution


def make_schedule(optimizer, num_steps: int):
  """The learning rate of ``config.train.optimizer`` (``optimizer``) over a run of
  ``num_steps``: a number for a constant rate without warm-up, else an optax schedule."""
  lr, warmup = optimizer.lr, optimizer.warmup_steps
  if optimizer.schedule == "constant":
    if warmup:
      return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                   optax.constant_schedule(lr)], [warmup])
    return lr
  if optimizer.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(num_steps, warmup + 1),
        end_value=lr * optimizer.final_lr_frac)
  raise ValueError("config.train.optimizer.schedule must be 'constant' or 'cosine', got "
                   f"{optimizer.schedule!r}")


def make_optimizer(optimizer, num_steps: int):
  """AdamW with global-norm clipping, as ``config.train.optimizer`` says."""
  return optax.chain(optax.clip_by_global_norm(optimizer.grad_clip),
                     optax.adamw(make_schedule(optimizer, num_steps),
                                 weight_decay=optimizer.weight_decay))


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
  opt_state = make_optimizer(config.train.optimizer, config.train.num_steps).init(params)
  return {"params": params, "opt_state": opt_state,
          "step": jnp.zeros((), jnp.int32), "rng": jax.random.fold_in(rng, 1)}


class FlatState:
  """The train state as the jitted steps hold it: the parameters as ONE vector, and so
  every parameter-shaped part of the optimizer state (Adam's moments). The optimizer,
  the gradient norm and the guard are then a few operations on one array instead of a
  few per parameter array, which is most of what a step compiles outside the model.
  Checkpoints keep the tree form (:func:`init_state`'s): :meth:`flatten` and
  :meth:`unflatten` convert, :meth:`params` gives the tree of parameters (slices of the
  vector: free inside a jitted program)."""

  def __init__(self, params_like):
    leaves, self.treedef = jax.tree.flatten(params_like)
    self.shapes = [tuple(x.shape) for x in leaves]
    self.offsets = np.cumsum([0] + [math.prod(shape) for shape in self.shapes]).tolist()
    self.size = self.offsets[-1]

  def _is_params(self, tree) -> bool:
    return jax.tree.structure(tree) == self.treedef

  def ravel(self, params):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(params)])

  def params(self, vector):
    """The tree of parameters whose concatenation is ``vector``."""
    return jax.tree.unflatten(self.treedef, [
        vector[a:b].reshape(shape) for a, b, shape in
        zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)])

  def flatten(self, state) -> dict:
    """A tree-form train state (params, opt_state, step, rng) -> the flat one."""
    to_vector = lambda t: self.ravel(t) if self._is_params(t) else t  # noqa: E731
    return {**state, "params": self.ravel(state["params"]),
            "opt_state": jax.tree.map(to_vector, state["opt_state"], is_leaf=self._is_params)}

  def unflatten(self, state) -> dict:
    """The inverse of :meth:`flatten`."""
    is_vector = lambda x: x.ndim == 1 and x.shape[0] == self.size  # noqa: E731
    return {**state, "params": self.params(state["params"]),
            "opt_state": jax.tree.map(lambda x: self.params(x) if is_vector(x) else x,
                                      state["opt_state"])}


def _train_step_fn(flow, optimizer, ex, layout: FlatState):
  """The pure step (flat state, uint8 batch) -> (flat state, metrics), the model
  computed as ``ex`` says."""

  def loss_fn(params, batch, rng):
    return jnp.mean(flow.bits_per_dim(params, batch, rng, ex))

  def step(state, batch):
    rng = jax.random.fold_in(state["rng"], state["step"])
    # The gradient of the tree, then ONE concatenation (the gradient of the vector's
    # slices would be a zero-padded full-size vector per slice, summed).
    loss, grads = jax.value_and_grad(loss_fn)(layout.params(state["params"]), batch, rng)
    grads = layout.ravel(grads)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    # The guard: a finite loss and gradient, and parameters that stay finite after the
    # update (a huge learning rate can overflow them from a finite gradient).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.all(jnp.isfinite(params))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {"params": keep(params, state["params"]),
                 "opt_state": keep(opt_state, state["opt_state"]),
                 "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, {"train_bpd": loss, "grad_norm": grad_norm, "finite": finite}

  return step


def make_train_step(flow, optimizer, mesh, precision: str | None = None,
                    ex: execution.Execution = execution.TRAINING):
  """The jitted step on a tree-form state: (state, uint8 batch) -> (state, metrics).
  ``ex``: how the model is computed (default: with the hand-written backward pass).
  The training loop runs :func:`make_loop_step` on the flat state, donated."""
  replicated = NamedSharding(mesh, P())

  def step(state, batch):
    layout = FlatState(state["params"])
    flat, metrics = _train_step_fn(flow, optimizer, ex, layout)(layout.flatten(state), batch)
    return layout.unflatten(flat), metrics

  return jax.jit(with_precision(step, precision),
                 in_shardings=(replicated, NamedSharding(mesh, P("data"))),
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


def make_loop_step(flow, optimizer, mesh, layout: FlatState, precision: str | None = None,
                   ex: execution.Execution = execution.TRAINING):
  """The training loop's step on the flat state (``layout``'s): (state, window, batch)
  -> (state, window), both donated; the train step with its metrics folded into the
  window on the device."""
  inner = _train_step_fn(flow, optimizer, ex, layout)

  def step(state, window, batch):
    state, m = inner(state, batch)
    return state, _fold_into_window(window, m, state["step"])

  replicated = NamedSharding(mesh, P())
  return jax.jit(with_precision(step, precision), donate_argnums=(0, 1),
                 in_shardings=(replicated, replicated, NamedSharding(mesh, P("data"))),
                 out_shardings=(replicated, replicated))


def device_memory_bytes() -> int | None:
  """The memory of one of this process's accelerators (its allocator's limit), or None
  where the platform reports none (a CPU)."""
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # noqa: BLE001  (platforms without memory statistics raise)
    return None
  return int(stats["bytes_limit"]) if "bytes_limit" in stats else None


def step_memory_bytes(compiled) -> int:
  """What XLA plans for one compiled step: arguments, outputs and temporaries."""
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


# The share of an accelerator's memory a training step may plan for without remat.
REMAT_ABOVE = 0.9


def needs_remat(compiled, budget: int | None) -> bool:
  """Whether XLA's plan for a step compiled without remat exceeds ``REMAT_ABOVE`` of
  ``budget`` bytes (None: no limit known, as on a CPU)."""
  return bool(budget) and step_memory_bytes(compiled) > REMAT_ABOVE * budget


# XLA:GPU's command buffers (CUDA graphs) leave loops and conditionals out by default,
# so each iteration of a scanned block would be launched from the host; with these the
# whole step is a graph. The options are the flag's full list (XLA takes no "+WHILE").
GPU_COMMAND_BUFFERS = {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,"
                                     "DYNAMIC_SLICE_FUSION,WHILE,CONDITIONAL",
    "xla_gpu_graph_min_graph_size": 1,
}


def compiler_options(mesh, command_buffers: bool = True) -> dict | None:
  """The training step's XLA options for ``mesh``'s platform: on a GPU with
  ``command_buffers``, :data:`GPU_COMMAND_BUFFERS`; elsewhere XLA's defaults (None)."""
  on_gpu = mesh.devices.flat[0].platform in ("gpu", "cuda", "rocm")
  return dict(GPU_COMMAND_BUFFERS) if on_gpu and command_buffers else None


def compile_loop_step(flow, optimizer, mesh, layout: FlatState, args, precision=None,
                      ex: execution.Execution = execution.TRAINING, remat=None,
                      budget: int | None = None, command_buffers: bool = True,
                      compile_fn=None):
  """:func:`make_loop_step` compiled ahead of time for ``args`` (state, window, batch),
  and the execution it was compiled with. ``remat`` None ("auto"): without remat, then
  once more with it where XLA's plan for the step exceeds ``REMAT_ABOVE`` of
  ``budget`` (default: :func:`device_memory_bytes`; None on a CPU: never), or where
  the compiler itself refuses the plan as too large (:func:`out_of_memory`). On a GPU
  with ``command_buffers``, compiled with :data:`GPU_COMMAND_BUFFERS`. ``compile_fn(step,
  args, options)``: how each try is compiled (default: lower, then compile; the compile
  benchmark times it)."""
  options = compiler_options(mesh, command_buffers)
  compile_fn = compile_fn or (lambda step, args, options: step.lower(*args).compile(
      compiler_options=options))

  def compile_with(ex):
    return compile_fn(make_loop_step(flow, optimizer, mesh, layout, precision, ex), args,
                      options)

  if remat is not None:
    ex = dataclasses.replace(ex, remat=bool(remat))
  auto = remat is None and not ex.remat
  try:
    compiled = compile_with(ex)
  except Exception as e:  # noqa: BLE001  (XLA raises its own runtime error type)
    if not (auto and out_of_memory(e)):
      raise
    compiled = None  # the plan did not fit: the TPU compiler says so by failing
  budget = device_memory_bytes() if budget is None else budget
  if auto and (compiled is None or needs_remat(compiled, budget)):
    ex = dataclasses.replace(ex, remat=True)
    compiled = compile_with(ex)
  return compiled, ex


def out_of_memory(error: BaseException) -> bool:
  """Whether a compile failed because its memory plan exceeds the device's (XLA:TPU
  raises RESOURCE_EXHAUSTED at compile time; GPU and CPU compilers only plan)."""
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text


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
    raise ValueError("no test images to evaluate: the test set (or "
                     "config.eval.bpd.max_images) is empty")
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
