"""Training: ``train_and_evaluate(config, workdir)``, the library behind rgflow-train (train.py).

The loop around the jitted step of :mod:`rgflow_jax.run.jit_steps`: resume from the newest
intact Orbax checkpoint (with the data pipeline's position), then step, and at the
sync points log, evaluate, sample and save; SIGTERM/SIGINT, a time limit or
``max_nonfinite`` non-finite steps in a row stop it with a checkpoint (the last good
one, for the last). It runs the same with one process or many (every decision that
could differ between processes is agreed: :mod:`rgflow_jax.io.multihost`).

The loop never waits on the device between its sync points: each step's metrics are
folded on the device into one small vector (``jit_steps.WINDOW``) that is read back
only when the loop logs, evaluates, samples, saves or stops, and the next batches are
already on the device when a step is dispatched (:class:`DevicePrefetch`).
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
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from rgflow_jax import data
from rgflow_jax.core import execution, pixels

from rgflow_jax.io import (checkpoint, figures, multihost, platform, progress, runlock,
                           storage)

from rgflow_jax.io.metrics import MetricsLog
from rgflow_jax.run import jit_steps, run_folder
from rgflow_jax.run.run_config import (TrainingError, build_model, check_resume_compatible,
                                       param_dtype, read_saved_config, reference_curves,
                                       validate_config)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ helpers
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
      self.queue.append((jit_steps.global_batch(local, self.mesh), self.batches.get_state()))

  def next(self) -> jax.Array:
    if not self.queue:
      self.fill()
    batch, self.consumed_state = self.queue.popleft()
    return batch


class StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks after each step.

  A first Ctrl-C is answered at once, even while XLA compiles (a thread woken through
  ``signal.set_wakeup_fd`` says it; Python's own handler only runs between steps): the
  run stops after the step with a checkpoint. A second one stops at once
  (KeyboardInterrupt; the commands exit 130 with one line). With several processes
  SIGTERM is left to JAX's preemption notifier (it tells every process, which then stop
  together: :func:`multihost.preempted`), and Ctrl-C is passed on to it as a SIGTERM."""

  SAY = ("Ctrl-C: stopping after this step, with a checkpoint (Ctrl-C again stops at "
         "once, losing the steps since the last checkpoint)")

  def __init__(self):
    self.received = None
    self._old, self._wakeup = {}, None
    if threading.current_thread() is not threading.main_thread():
      return
    if jax.distributed.is_initialized():
      self._old = {signal.SIGINT: signal.signal(signal.SIGINT, self._forward)}
      return
    self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    read, write = os.pipe()
    os.set_blocking(write, False)
    self._wakeup = (read, write, signal.set_wakeup_fd(write, warn_on_full_buffer=False))
    threading.Thread(target=self._announce, args=(read,), daemon=True).start()

  def _announce(self, read: int):
    told = False
    try:
      while True:
        got = os.read(read, 64)
        if not got or 0 in got:  # closed, or restore()'s sentinel
          return
        if signal.SIGINT in got and not told:
          progress.say(self.SAY)
          told = True
    finally:
      os.close(read)

  def _handle(self, signum, frame):
    if signum == signal.SIGINT and self.received == "SIGINT":
      raise KeyboardInterrupt  # the second Ctrl-C
    self.received = signal.Signals(signum).name

  @staticmethod
  def _forward(signum, frame):
    os.kill(os.getpid(), signal.SIGTERM)

  def restore(self):
    for s, h in self._old.items():
      signal.signal(s, h)
    if self._wakeup is not None:
      read, write, old = self._wakeup
      signal.set_wakeup_fd(old)
      os.write(write, b"\0")  # the announcing thread ends (and closes its end)
      os.close(write)
      self._wakeup = None


class _WindowReader:
  """Host side of ``jit_steps.WINDOW``: reads it at the loop's sync points, keeps the
  skipped count and the rows' means, and starts a new window after each log row."""

  def __init__(self, mesh, skipped: int):
    self.mesh, self.skipped_before = mesh, skipped
    self.values = dict.fromkeys(jit_steps.WINDOW, 0.0)

  def read(self, window) -> dict:
    self.values = dict(zip(jit_steps.WINDOW, (float(v) for v in jax.device_get(window)),
                           strict=True))
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
    self.values = dict.fromkeys(jit_steps.WINDOW, 0.0)
    self.values.update(nonfinite_run=run, run_start=start)
    return jit_steps.new_window(self.mesh, run, start)

  def check(self, window, step: int, config, ckpts, workdir):
    """Read ``window`` at ``step``: warn about skipped updates; stop the run after
    ``config.train.max_nonfinite`` non-finite steps in a row (the last good checkpoint is
    intact)."""
    before = self.skipped
    w = self.read(window)
    if self.skipped > before:
      log.warning("steps %d-%d: %d non-finite losses or gradients, updates skipped",
                  step - int(w["steps"]) + 1, step, self.skipped - before)
    if w["nonfinite_run"] >= config.train.max_nonfinite:
      raise TrainingError(
          f"stopped at step {int(w['run_start']) + config.train.max_nonfinite - 1}: "
          f"{config.train.max_nonfinite} non-finite losses or gradients in a row; the last "
          f"good checkpoint (step {ckpts.latest_step()}) is intact in "
          f"{workdir}/checkpoints. Lower config.train.optimizer.lr or check the data.")


def _first_save(config) -> int:
  """The step of the first checkpoint a run of ``config`` (a ConfigDict or a saved
  config.json's dict) saves when nothing stops it early."""
  t = config["train"]
  return min(t["checkpoint"]["every"], t["test"]["every"], t["num_steps"])


def _settle_history(config, workdir, earlier_run, abstract_state) -> bool:
  """Before any data is made: what the run folder holds, and the caller's choice for an
  earlier run there without a checkpoint to resume (:mod:`rgflow_jax.run.run_folder`).
  Refuses in one line, changing nothing, where no choice was given; with
  ``start_over`` moves the earlier run's files aside. Returns whether the run resumes
  from ``best/``. Every process takes the same decision. ``abstract_state()``: the
  train state's shapes, to try the checkpoints where a choice was given."""
  if earlier_run not in (None,) + run_folder.CHOICES:
    raise ValueError(f"earlier_run must be one of {run_folder.CHOICES} or None, got "
                     f"{earlier_run!r}")
  saved = read_saved_config(workdir) if (workdir / "config.json").is_file() else None
  survey = run_folder.survey(workdir, _first_save(saved or config))
  wrong = [n for n in survey.wrong_kind if n != "checkpoints"]  # that one is evidence
  intact, evidence = None, survey.evidence
  if survey.checkpoint_steps and earlier_run and not wrong:
    intact = _newest_intact_step(workdir, abstract_state())
    if intact is None:
      evidence += (f"checkpoints/ (steps {', '.join(map(str, survey.checkpoint_steps))}, "
                   "none intact)",)
  refusal = None
  if wrong:
    kinds = ", ".join(f"{n} is a {'file' if n in run_folder.RUN_FOLDERS else 'folder'}"
                      for n in wrong)
    refusal = (f"{workdir} is not a run folder as training leaves it ({kinds}); move "
               f"{'it' if len(wrong) == 1 else 'them'} away, or rerun with --start_over "
               "to move the earlier run's files aside whole")
    if earlier_run == "start_over":
      refusal = None
  elif intact is not None or (survey.checkpoint_steps and not earlier_run):
    if earlier_run:  # the choices answer a refusal; a run that can resume does
      progress.say(f"--{earlier_run}: nothing to do, {workdir} has a checkpoint to resume "
                   f"(step {intact}); resuming from it", jax.process_index() == 0)
    earlier_run = None
  elif not evidence:
    earlier_run = None  # nothing to keep: a new run, or one cut off before a checkpoint
  elif earlier_run is None:
    refusal = _refusal(workdir, ["no checkpoint to resume", *evidence], survey.best_steps)
  elif earlier_run == "resume_from_best" and not survey.best_steps:
    refusal = (f"--resume_from_best: {workdir}/best holds no checkpoint; rerun with "
               "--start_over to move the earlier run's files aside")
  multihost.barrier("surveyed the run folder")  # nobody moves a file another still reads
  if multihost.any_process(refusal is not None):
    raise TrainingError(refusal or f"another process refused to train in {workdir}")
  if earlier_run == "start_over":
    if jax.process_index() == 0:
      aside = run_folder.move_aside(workdir, survey.present)
      progress.say(f"started over: the earlier run's files are in {aside}")
    multihost.barrier("moved the earlier run aside")
  elif earlier_run == "resume_from_best" and "checkpoints" in survey.wrong_kind:
    if jax.process_index() == 0:  # a file in the place of checkpoints/: damage
      aside = storage.move(workdir / "checkpoints",
                           workdir / "damaged" / f"checkpoints-{run_folder.stamp()}")
      progress.say(f"{workdir}/checkpoints was a file: set aside as {aside}")
    multihost.barrier("set the checkpoints file aside")
  return earlier_run == "resume_from_best"


def _newest_intact_step(workdir, abstract_state) -> int | None:
  """The step of the newest intact checkpoint in ``workdir/checkpoints`` (None if none
  is), read without changing anything."""
  probe = checkpoint.Checkpoints(workdir, read_only=True)
  try:
    return probe.find_newest_intact(abstract_state)[2]
  except checkpoint.NoIntactCheckpoint:
    return None
  finally:
    probe.close()


def _refusal(workdir, found: list[str], best_steps) -> str:
  """The one line that refuses to train over an earlier run: what was ``found`` (the
  first item says why it cannot be resumed) and the two choices."""
  choices = []
  if best_steps:
    choices.append(f"--resume_from_best to go on from best/ step {best_steps[0]} "
                   "(a whole checkpoint: parameters, optimizer state and data position; "
                   "the steps after it are trained again)")
  choices.append(f"--start_over to move the earlier run's files whole to {workdir}/"
                 f"{run_folder.EARLIER_RUNS}/<date>-<time>/ and train from step 0")
  why, *rest = found
  return (f"{workdir} holds an earlier run but {why}" + (f" ({'; '.join(rest)})" if rest
                                                         else "")
          + f"; nothing was changed: rerun with {', or '.join(choices)}")


def _restore(ckpts, state, workdir, batches, from_best: bool):
  """(state, meta, resume step or None): the newest intact checkpoint (damaged newer
  ones set aside), or with ``from_best`` the best one (every checkpoint of
  ``checkpoints/`` is damaged, and set aside); the best a kill cut off written, and
  the data position set. The config was compared with the run's before any data was
  made (:func:`_train`)."""
  meta = {"skipped_steps": 0, "best_test_bpd": None}
  damaged = []
  try:
    if ckpts.latest_step() is None and not from_best:
      return state, meta, None
    if ckpts.latest_step() is None:
      raise checkpoint.NoIntactCheckpoint("no checkpoint", [])
    state, meta, resume_step, damaged = ckpts.find_newest_intact(state)
    from_best = False  # one turned up intact after all: it is newer than the best
  except checkpoint.NoIntactCheckpoint as e:
    if not from_best:
      steps = ", ".join(str(step) for step, _ in e.damaged)
      survey = run_folder.survey(workdir, 0)
      raise TrainingError(_refusal(
          workdir, [f"none of its checkpoints is intact (steps {steps}; the newest: "
                    f"{e.damaged[0][1]})", *survey.evidence], survey.best_steps)) from None
    try:
      state, meta, resume_step, _ = ckpts.find_newest_intact(state, best=True)
    except checkpoint.NoIntactCheckpoint as e_best:
      raise TrainingError(f"--resume_from_best: {e_best}; rerun with --start_over to move "
                          "the earlier run aside") from None
    damaged = e.damaged
  data_state = meta.pop("data_state", None)
  if data_state is not None:  # None: an imported model, trained elsewhere
    try:
      batches.set_state(data_state)
    except Exception as e:  # noqa: BLE001  (grain raises many types for a bad position)
      folder = ckpts.best.directory if from_best else ckpts.last.directory
      raise storage.RunFileError(
          f"{folder / str(resume_step) / 'meta' / 'metadata'}: \"data_state\" is not a "
          f"position of this run's data ({storage.error_line(e)}); restore the file from a "
          "copy") from None
  ckpts.set_aside(damaged)
  ckpts.complete_best(resume_step, state, meta)
  log.info("resumed from %sstep %d in %s", "best/ " if from_best else "", resume_step, workdir)
  if from_best:
    progress.say(f"resumed from best/ step {resume_step}; the steps after it are trained "
                 "again", jax.process_index() == 0)
  return state, meta, resume_step


def _record_test(meta: dict, test: float, step: int, minutes: float, metrics_log, bar):
  """Log a test bits/dim and keep the best; a NaN evaluation is never the best."""
  best = meta.get("best_test_bpd")
  if math.isfinite(test):
    meta["best_test_bpd"] = test if best is None else min(best, test)
  else:
    log.warning("step %d: test bits/dim is %s; not a candidate for best/", step, test)
  metrics_log.write({"step": step, "minutes": round(minutes, 4), "test_bpd": test})
  progress.note(bar, f"step {step}: test bits/dim {test:.4f}")


# --------------------------------------------------------------------- main
def train_and_evaluate(config, workdir, earlier_run: str | None = None) -> dict:
  """Train ``config`` in ``workdir``, resuming from its latest intact checkpoint if any.

  ``workdir`` may be local or an object-store URL (``gs://bucket/run``). Where it holds
  an earlier run but no checkpoint to resume, nothing happens without ``earlier_run``:
  ``"resume_from_best"`` or ``"start_over"`` (:mod:`rgflow_jax.run.run_folder`). Returns
  a summary dict (final step, last train and test bits/dim, skipped steps, why it
  stopped).
  """
  validate_config(config)
  try:
    multihost.initialize(config.hosts)
    multihost.agree_on_settings(config, workdir, {"earlier_run": earlier_run})
  except multihost.DistributedError as e:
    raise TrainingError(str(e)) from None
  created = not storage.as_path(workdir).exists()
  workdir = storage.check_writable(workdir, "workdir")
  try:
    return _locked_train(config, workdir, earlier_run)
  except BaseException:
    if created and jax.process_index() == 0:
      _remove_if_nothing_saved(workdir)
    raise


def _remove_if_nothing_saved(workdir) -> None:
  """A run folder this start made, and that holds no checkpoint yet (the start failed:
  no data, a bad config, a stop before the first step), is removed: no empty run
  folder and stale lock are left behind."""
  saved = workdir / "checkpoints"
  if saved.exists() and any(saved.iterdir()):
    return
  try:
    workdir.rmtree()
  except OSError as e:  # the failure itself is what the user must see
    log.warning("could not remove the empty run folder %s (%s)", workdir, e)


def _locked_train(config, workdir, earlier_run) -> dict:
  with contextlib.ExitStack() as stack:
    lock, refused = None, None
    if jax.process_index() == 0:  # one lock for the run; the others learn the outcome
      try:
        lock = stack.enter_context(runlock.RunLock(
            workdir, config.train.checkpoint.lock_lease_s))
      except runlock.RunLocked as e:
        refused = str(e)
    if multihost.any_process(refused is not None):
      raise TrainingError(refused or "process 0 could not lock the workdir (see its log)")
    try:
      return _train(config, workdir, lock, earlier_run)
    except runlock.RunLocked as e:
      raise TrainingError(str(e)) from None


def _train(config, workdir, lock=None, earlier_run=None) -> dict:
  platform.use_compilation_cache(config.execution.compilation_cache_dir)
  dtype = param_dtype(config)
  flow = build_model(config)
  mesh = jit_steps.make_mesh()
  if config.train.batch_size % jax.device_count():
    raise ValueError(f"config.train.batch_size={config.train.batch_size} must be a "
                     f"multiple of the {jax.device_count()} devices")
  replicated = NamedSharding(mesh, P())
  from_best = _settle_history(config, workdir, earlier_run, lambda: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      jax.eval_shape(lambda: jit_steps.init_state(flow, config, dtype))))
  ckpts = checkpoint.Checkpoints(workdir, config.train.checkpoint.keep)
  try:  # Orbax's managers are closed on every way out (their threads outlive an error)
    return _train_with(ckpts, config, workdir, lock, from_best, flow, mesh, dtype)
  finally:
    ckpts.wait()
    ckpts.close()


def _train_with(ckpts, config, workdir, lock, from_best, flow, mesh, dtype) -> dict:
  n_proc, proc = jax.process_count(), jax.process_index()
  t = config.train
  if ckpts.latest_step() is not None or from_best:  # refuse another run's config first
    check_resume_compatible(workdir, config)
  train_src, test_src = (data.make_source(config.data, split, flow.image_size, flow.channels,
                                         config.progress) for split in ("train", "test"))
  for src in (train_src, test_src):
    data.check_source_shape(src, flow.image_size, flow.channels)
  batches = data.train_batches(train_src, t.batch_size // n_proc,
                               config.data.seed + config.seed, config.data.flip, proc, n_proc)

  # Replicated over every device of every process before a restore, which then reads
  # straight into that layout (a restored array is committed to one device, and moving
  # it across hosts afterwards is a transfer CPU and GPU clients cannot make).
  state = jax.device_put(jit_steps.init_state(flow, config, dtype), NamedSharding(mesh, P()))
  state, meta, resume_step = _restore(ckpts, state, workdir, batches, from_best)
  # In memory the state is flat (jit_steps.FlatState); checkpoints hold its tree form.
  layout = jit_steps.FlatState(state["params"])
  replicated = NamedSharding(mesh, P())
  params_of = jax.jit(layout.params, out_shardings=replicated)
  to_tree = jax.jit(layout.unflatten, out_shardings=replicated)
  state = jax.jit(layout.flatten, out_shardings=replicated)(state)
  config_dict = json.loads(config.to_json())
  if proc == 0:
    storage.write_json_atomic(workdir / "config.json", config_dict)
  metrics_log = MetricsLog(workdir, resume_step)
  metrics_log.hparams(config_dict)
  schedule = jit_steps.make_schedule(t.optimizer, t.num_steps)  # a number, if constant
  lr_at = schedule if callable(schedule) else lambda _: schedule

  ex = execution.Execution.from_config(config.execution, training=True)
  eval_step = jit_steps.make_eval_step(flow, mesh, ex)
  sample_fn = jax.jit(jit_steps.with_precision(
      lambda p, r: flow.sample(p, r, t.samples.num, t.samples.temperature,
                               ex.for_evaluation()), jit_steps.EVAL_PRECISION))
  eval_rng = jax.random.PRNGKey(config.seed + 12345)

  def test_bpd(params):
    ev = data.eval_batches(test_src, jit_steps.eval_batch_size(config.eval.batch_size),
                           t.test.images, proc, n_proc)
    return jit_steps.evaluate_bpd(flow, params, ev, mesh, eval_rng, eval_step)[0]

  def write_samples(params, step):  # every process computes; process 0 writes the file
    imgs = pixels.to_uint8(sample_fn(params, jax.random.fold_in(eval_rng, step)))
    if proc == 0:
      grid = figures.save_grid(np.asarray(jax.device_get(imgs)),
                             workdir / "samples" / f"step{step:07d}.png",
                             title=f"samples at step {step}, T = {t.samples.temperature}")
      metrics_log.image("samples", grid, step)

  step = int(state["step"])
  prefetch = DevicePrefetch(batches, mesh)
  reader = _WindowReader(mesh, meta.get("skipped_steps", 0))
  window = jit_steps.new_window(mesh)

  def save(step, test=None):
    if multihost.any_process(lock is not None and lock.lost):  # every process stops
      raise runlock.RunLocked(f"the lease on {workdir} was taken over by another trainer "
                              "while this run could not renew it: stopping, so that one "
                              "writer remains")
    meta["train_seconds"] = round(trained_s(), 3)  # also the summary's
    meta_out = dict(meta, data_state=prefetch.consumed_state, step=step,
                    skipped_steps=reader.skipped)
    ckpts.save(step, to_tree(state), meta_out, test)

  minutes0 = metrics_log.offset_minutes
  # config.train.time_limit_s bounds the run's training time over all its launches: what the
  # earlier ones trained is in the checkpoint (older ones: the metrics log's minutes).
  trained_before = float(meta.get("train_seconds", 60.0 * minutes0))
  start_time = time.perf_counter()
  trained_s = lambda: trained_before + time.perf_counter() - start_time  # noqa: E731
  if t.time_limit_s and trained_before >= t.time_limit_s:
    progress.say(f"this run has trained {trained_before:.0f} s, its time limit "
                 f"(time_limit_s = {t.time_limit_s:g}): nothing to train; raise "
                 "--config.train.time_limit_s to train on", proc == 0)
    metrics_log.close()
    return {"step": step, "steps_this_run": 0, "stopped_by": "time_limit",
            "train_bpd": None, "best_test_bpd": meta.get("best_test_bpd"),
            "skipped_steps": reader.skipped, "train_seconds": trained_before}
  stop = StopSignal()  # before compiling: a stop then saves after the first step
  bar = progress.bar(None, enabled=False)  # starts after the first step: training's rate
  reason, last = "num_steps", {}
  try:
    progress.say(f"compiling the training step ({layout.size:,} parameters, batch "
                 f"{t.batch_size})", proc == 0)
    compile_start = time.perf_counter()
    loop_step, ex_used = jit_steps.compile_loop_step(
        flow, jit_steps.make_optimizer(t.optimizer, t.num_steps), mesh, layout,
        (state, window, prefetch.queue[0][0]), config.execution.matmul_precision, ex,
        execution.remat_choice(config.execution),
        command_buffers=config.execution.gpu_command_buffers)
    progress.say(f"compiled in {time.perf_counter() - compile_start:.1f} s"
                 + ("; each RNVP layer is recomputed in the backward pass (remat), as the "
                    "step would not fit in the accelerator's memory otherwise"
                    if ex_used.remat and not ex.remat else ""), proc == 0)
    start_step, start_time = step, time.perf_counter()
    window_start, window_steps = start_time, 0
    while step < t.num_steps:
      state, window = loop_step(state, window, prefetch.next())
      prefetch.fill()  # the host reads ahead while the device runs the step
      step += 1
      window_steps += 1
      if step == start_step + 1:
        jax.block_until_ready(window)
        progress.say(f"ran step {step} in {time.perf_counter() - start_time:.1f} s; "
                     "training", proc == 0)
        bar = progress.bar(None, config.progress and proc == 0, total=t.num_steps,
                           initial=step, desc="train", unit="step")
      else:
        bar.update(1)
      log_now = step % t.log_every == 0 or step == t.num_steps
      # With several processes the clocks are compared at log steps only, which every
      # process visits, and agreed: one process alone must never take another branch.
      out_of_time = bool(t.time_limit_s) and (n_proc == 1 or log_now) and \
          multihost.any_process(trained_s() > t.time_limit_s)
      if multihost.preempted(step):  # SIGTERM to any process: all stop at this step
        stop.received = "SIGTERM"
      eval_now = step % t.test.every == 0 or step == t.num_steps or out_of_time
      sample_now = bool(t.samples.every) and step % t.samples.every == 0
      save_now = step % t.checkpoint.every == 0 or eval_now or stop.received or out_of_time
      if not (log_now or sample_now or save_now):
        continue  # no read-back: the next step is dispatched while this one runs

      reader.check(window, step, config, ckpts, workdir)  # raises after too many NaNs
      minutes = minutes0 + (time.perf_counter() - start_time) / 60.0
      if log_now:
        dt = time.perf_counter() - window_start
        last = {"step": step, "minutes": round(minutes, 4), **reader.row(),
                "lr": float(lr_at(step)),
                "steps_per_s": window_steps / dt,
                "images_per_s": window_steps * t.batch_size / dt}
        window = reader.restart()
        window_start, window_steps = time.perf_counter(), 0
        metrics_log.write(last)
        bar.set_postfix(bpd=f"{last['train_bpd']:.3f}", refresh=False)
        if t.time_limit_s:  # the bar ends where the run will: num_steps or the limit
          time_left = t.time_limit_s - trained_s()
          bar.total = min(t.num_steps, step + max(1, int(last["steps_per_s"] * time_left)))
      test = test_bpd(params_of(state["params"])) if eval_now else None
      if eval_now:
        _record_test(meta, test, step, minutes, metrics_log, bar)
      if sample_now:
        write_samples(params_of(state["params"]), step)
      if save_now:
        save(step, test)
      if stop.received or out_of_time:
        reason = stop.received or "time_limit"
        break
    if step == t.num_steps and ckpts.latest_step() != step:
      save(step)
  finally:
    metrics_log.close()
    stop.restore()
    bar.close()
  if proc == 0:
    figures.plot_bpd_curve(workdir / "metrics.jsonl", workdir / "bpd_curve.png",
                         reference_curves(config))
  summary = {"step": step, "steps_this_run": step - start_step, "stopped_by": reason,
             "train_bpd": last.get("train_bpd"), "best_test_bpd": meta.get("best_test_bpd"),
             "skipped_steps": reader.skipped,
             "train_seconds": meta.get("train_seconds", trained_before)}
  log.debug("finished: %s", summary)
  return summary
