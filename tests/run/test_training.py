"""The training step and loop in one process: the hand backward against autodiff, skipped
non-finite and overflowing updates, window means, matmul precision, the accelerator
variant, the learning-rate schedule and config values refused in one line (whole runs:
tests/e2e/test_training.py)."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import (UNIT_BATCH, assert_gradients_close, load_config, perturb, smoke_config,
                     step_gradient, unit_config)
from rgflow_jax.core.execution import Execution
from rgflow_jax.run import jit_steps, run_config, training


# ------------------------------------------------------- hand-written backward
def test_train_step_uses_the_hand_backward_and_matches_autodiff():
  """The training run's execution turns the hand-written backward pass
  (coupling_fast._mlp_bwd) on, and the step's gradient with it equals plain autodiff's,
  every entry (float32, random parameters)."""
  c = unit_config()
  ex = Execution.from_config(c.execution, training=True)
  assert ex.hand_backward and not Execution.from_config(c.execution).hand_backward
  flow = run_config.build_model(c)
  mesh = jit_steps.make_mesh()
  images = np.random.default_rng(0).integers(0, 256, UNIT_BATCH).astype(np.uint8)
  params = perturb(flow.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.05)
  hand = step_gradient(flow, params, images, mesh, ex)
  auto = step_gradient(flow, params, images, mesh, Execution(hand_backward=False))
  np.testing.assert_allclose(hand["loss"], auto["loss"], rtol=1e-6)
  assert_gradients_close(hand["grad"], auto["grad"])
  # Really two computations (rounding differs): the step ran what it was given.
  assert np.abs(np.subtract(hand["grad"], auto["grad"])).max() > 0


# ------------------------------------------------------------- NaN guard
def test_nonfinite_batch_skips_the_update():
  c = unit_config()
  flow = run_config.build_model(c)
  mesh = jit_steps.make_mesh()
  state = jit_steps.init_state(flow, c, jnp.float32)
  before = jax.tree.map(np.asarray, state["params"])
  optimizer = jit_steps.make_optimizer(c.train.optimizer, c.train.num_steps)
  step = jit_steps.make_train_step(flow, optimizer, mesh)
  bad = np.full(UNIT_BATCH, np.nan, np.float32)
  state, m = step(state, jit_steps.global_batch(bad, mesh))
  assert not bool(m["finite"])
  assert int(state["step"]) == 1
  chex.assert_trees_all_equal(before, state["params"])


@pytest.mark.parametrize("key,value,msg", [
    ("lr", -1.0, "config.train.optimizer.lr"), ("batch_size", 0, "config.train.batch_size"),
    ("schedule", "linear", "config.train.optimizer.schedule"), ("dtype", "float16", "config.dtype"),
    ("data.name", "imagenet", "config.data.name"), ("model.prior", "cauchy", "prior"),
    ("keep_checkpoints", 0, "config.train.checkpoint.keep"),
    ("eval_images", 0, "config.train.test.images"), ("num_samples", 0, "config.train.samples.num"),
    ("time_limit_s", -1.0, "config.train.time_limit_s"),
    ("matmul_precision", "fast", "config.execution.matmul_precision"),
    ("coordinator_address", "127.0.0.1:99999", "config.hosts.coordinator_address: the coordinator "
     r"port 99999 of 127.0.0.1:99999 is not in 1\.\.65535"),
    ("coordinator_address", "localhost", "config.hosts.coordinator_address: the coordinator "
     "address 'localhost' is not HOST:PORT"),
])
def test_invalid_config_values_are_one_line_errors(tmp_path, key, value, msg):
  c = smoke_config(tmp_path, **{key: value})
  with pytest.raises(ValueError, match=msg) as err:
    training.train_and_evaluate(c, tmp_path / "run")
  assert "\n" not in str(err.value)
  if key != "data.name":  # the data layer's own error (DataError), where data are made
    assert isinstance(err.value, run_config.ConfigError)  # the commands exit 2 for it


def test_window_means_match_the_steps_it_folds():
  c = unit_config()
  flow = run_config.build_model(c)
  mesh = jit_steps.make_mesh()
  opt = jit_steps.make_optimizer(c.train.optimizer, c.train.num_steps)
  plain = jit_steps.make_train_step(flow, opt, mesh)
  s1 = jit_steps.init_state(flow, c, jnp.float32)
  layout = jit_steps.FlatState(s1["params"])
  loop = jit_steps.make_loop_step(flow, opt, mesh, layout)
  rng = np.random.default_rng(0)
  good = [rng.integers(0, 256, UNIT_BATCH).astype(np.float32) for _ in range(3)]
  bad = np.full(UNIT_BATCH, np.nan, np.float32)
  batches = [good[0], bad, good[1], bad, bad, good[2], bad]
  s2 = layout.flatten(jax.tree.map(jnp.copy, s1))
  window, losses, norms = jit_steps.new_window(mesh), [], []
  for b in batches:
    s1, m = plain(s1, jit_steps.global_batch(b, mesh))
    if bool(m["finite"]):
      losses.append(float(m["train_bpd"]))
      norms.append(float(m["grad_norm"]))
    s2, window = loop(s2, window, jit_steps.global_batch(b, mesh))
  w = dict(zip(jit_steps.WINDOW, np.asarray(window)))
  assert w["steps"] == 7 and w["finite_steps"] == 3
  np.testing.assert_allclose(w["bpd_sum"] / 3, np.mean(losses), rtol=1e-6)
  np.testing.assert_allclose(w["grad_norm_sum"] / 3, np.mean(norms), rtol=1e-6)
  assert w["nonfinite_run"] == 1 and w["run_start"] == 7  # the run that step 7 began
  chex.assert_trees_all_equal(s1, layout.unflatten(s2))  # the optimizer state too


def _dot_precisions(lowered) -> set:
  import re  # noqa: PLC0415
  return set(re.findall(r"precision = \[(\w+), \w+\]", lowered.as_text()))


def test_matmul_precision_reaches_the_step_and_evaluation_runs_at_highest():
  c = unit_config()
  flow = run_config.build_model(c)
  mesh = jit_steps.make_mesh()
  opt = jit_steps.make_optimizer(c.train.optimizer, c.train.num_steps)
  state = jit_steps.init_state(flow, c, jnp.float32)
  layout = jit_steps.FlatState(state["params"])
  batch = jit_steps.global_batch(np.zeros(UNIT_BATCH, np.uint8), mesh)
  for precision in ("default", "high", "highest"):
    step = jit_steps.make_loop_step(flow, opt, mesh, layout, precision)
    assert _dot_precisions(step.lower(layout.flatten(state), jit_steps.new_window(mesh),
                                      batch)) == \
        {precision.upper()}
  weight = jit_steps.global_batch(np.ones(UNIT_BATCH[0], np.float32), mesh)
  ev = jit_steps.make_eval_step(flow, mesh)
  assert _dot_precisions(ev.lower(state["params"], batch, weight,
                                  jax.random.PRNGKey(0)[None], 0)) == {"HIGHEST"}


def test_accelerator_variant_and_bfloat16_are_reachable_from_the_config():
  c = load_config("msds1", "smoke,accel")
  assert Execution.from_config(c.execution, training=True).matmul_dtype == "bfloat16"
  assert c.execution.compilation_cache_dir and c.execution.matmul_precision == "default"
  assert load_config("msds1", "smoke,accel,realnvp").execution.matmul_dtype == "float32"
  c = load_config("msds1", "smoke")
  c.execution.matmul_dtype = "bfloat16"  # what --config.execution.matmul_dtype=bfloat16 sets
  assert Execution.from_config(c.execution, training=True).matmul_dtype == "bfloat16"
  c.execution.matmul_dtype = "float16"
  with pytest.raises(ValueError, match="execution.matmul_dtype must be one of"):
    run_config.validate_config(c)
  c.execution.matmul_dtype = "float32"
  c.execution.matmul_precision = "float8"
  with pytest.raises(ValueError, match="config.execution.matmul_precision"):
    run_config.validate_config(c)


# ------------------------------------------------ nothing non-finite kept as good
def test_an_update_that_overflows_the_parameters_is_skipped():
  """A finite loss and gradient whose update overflows float32 (the old guard let it
  through): the step is counted non-finite and the parameters stay as they were."""
  import optax  # noqa: PLC0415
  c = unit_config()
  flow = run_config.build_model(c)
  mesh = jit_steps.make_mesh()
  # An optimizer whose update overflows float32 (3e38 * 10), from a finite gradient.
  opt = optax.chain(optax.sgd(1.0), optax.GradientTransformation(
      lambda p: optax.EmptyState(),
      lambda g, s, p=None: (jax.tree.map(lambda x: jnp.full_like(x, 3e38) * 10, g), s)))
  state = jit_steps.init_state(flow, c, jnp.float32)
  state["opt_state"] = opt.init(state["params"])
  before = jax.tree.map(np.asarray, state["params"])
  step = jit_steps.make_train_step(flow, opt, mesh)
  images = np.random.default_rng(0).integers(0, 256, UNIT_BATCH).astype(np.uint8)
  state, m = step(state, jit_steps.global_batch(images, mesh))
  assert np.isfinite(float(m["train_bpd"])) and np.isfinite(float(m["grad_norm"]))
  assert not bool(m["finite"])
  chex.assert_trees_all_equal(before, state["params"])


@pytest.mark.parametrize("schedule,warmup", [("constant", 0), ("constant", 10),
                                             ("cosine", 10), ("cosine", 0)])
def test_the_learning_rate_schedule_has_its_closed_form(tmp_path, schedule, warmup):
  """lr(t): linear warm-up from 0 over warmup_steps, then constant, or a half cosine
  from lr down to final_lr_frac * lr at num_steps (the warm-up counted in)."""
  c = smoke_config(tmp_path, schedule=schedule, warmup_steps=warmup, num_steps=100, lr=2e-3,
                   final_lr_frac=0.1)
  fn = jit_steps.make_schedule(c.train.optimizer, c.train.num_steps)
  for t in (0, 5, 10, 40, 99, 100):
    got = float(fn(t)) if callable(fn) else float(fn)
    if warmup and t < warmup:
      want = 2e-3 * t / warmup
    elif schedule == "constant":
      want = 2e-3
    else:
      w = max(warmup, 1)
      frac = min(max(t - w, 0) / (100 - w), 1.0) if t >= w else None
      want = 2e-3 * t / w if frac is None else \
          2e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12, err_msg=f"t={t}")
