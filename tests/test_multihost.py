"""Many processes, for real: two train.py processes (one CPU device each, gloo
collectives, JAX's coordination service on 127.0.0.1) started by
scripts/launch_local.py, against one process with two devices; a SIGTERM to one of
them, a SIGKILL of one, and the restarts."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from rgflow_jax import checkpoint, jit_steps, run_config
from test_training import ROOT, load_config

pytestmark = pytest.mark.e2e  # real processes / services: the end-to-end tier

HEARTBEAT_S = 10
STEPS = 18


def _flags(workdir, data_dir, steps=STEPS):
  # 13 test images in global batches of 4: the last batch is one image, on process 0
  # only, so the processes' shares are unequal.
  return ["train.py", "--config", str(ROOT / "configs/msds1.py:smoke"), f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.num_steps={steps}",
          "--config.ckpt_every=4", "--config.eval_every=6", "--config.sample_every=6",
          "--config.log_every=1", "--config.eval_images=13", "--config.eval_batch_size=4",
          f"--config.heartbeat_timeout_s={HEARTBEAT_S}"]


def _env(**extra):
  return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)


class Launch:
  """scripts/launch_local.py -n 2 running train.py; its output collected as it comes."""

  def __init__(self, workdir, data_dir):
    self.workdir = workdir
    self.proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/launch_local.py"), "-n", "2", "--grace_s", "60",
         "--", *_flags(workdir, data_dir)], cwd=ROOT, env=_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    self.lines, self.pids = [], {}
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stdout:
      if m := re.match(r"\[launch\] process (\d) of 2: pid (\d+)", line):
        self.pids[int(m.group(1))] = int(m.group(2))
      self.lines.append(line)

  @property
  def text(self):
    return "".join(self.lines)

  def wait_for_step(self, step, timeout=240):
    start = time.time()
    while max(_logged(self.workdir), default=0) < step:
      assert self.proc.poll() is None, self.text[-4000:]
      assert time.time() - start < timeout, "timed out"
      time.sleep(0.02)

  def finish(self, timeout=300):
    self.proc.wait(timeout=timeout)
    time.sleep(0.2)  # the reader thread's last lines
    return self.proc.returncode

  def exits(self):
    """{process: (status, seconds since launch)} from the launcher's report."""
    return {int(i): (int(s), float(t)) for i, s, t in re.findall(
        r"\[launch\] process (\d) exited with status (\d+) after ([\d.]+) s", self.text)}


def _logged(workdir, key="train_bpd"):
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l)["step"] for l in path.read_text().splitlines() if key in l]


def _state(workdir):
  c = load_config("msds1")
  ckpts = checkpoint.Checkpoints(workdir, read_only=True)
  state, meta = ckpts.restore(jit_steps.init_state(run_config.build_model(c), c, jnp.float32))
  ckpts.close()
  return state, meta


def _rows(workdir, key):
  return [(r["step"], r[key]) for r in map(json.loads, (workdir / "metrics.jsonl").read_text()
                                           .splitlines()) if key in r]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Uninterrupted: two processes x one device, and one process x two devices."""
  base = tmp_path_factory.mktemp("multihost")
  data_dir = base / "data"
  one = subprocess.run(
      [sys.executable, *_flags(base / "one", data_dir)], cwd=ROOT, capture_output=True,
      text=True, timeout=300, env=_env(XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
                                       " --xla_force_host_platform_device_count=2"))
  assert one.returncode == 0, one.stderr[-3000:]
  two = Launch(base / "two", data_dir)
  assert two.finish() == 0, two.text[-4000:]
  return base, two


def test_two_processes_train_as_one_process_with_two_devices(runs):
  base, two = runs
  got, got_meta = _state(base / "two")
  want, want_meta = _state(base / "one")
  assert got_meta["step"] == want_meta["step"] == STEPS
  assert got_meta["data_state"] == want_meta["data_state"]
  # float32; the gradient all-reduce adds the same two per-device sums either way, so
  # the runs agree to rounding (in practice bitwise).
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)
  # Evaluated on both processes at steps 6, 12, ... with unequal shares: the same test
  # bits/dim as one process computes on the same 13 images.
  tests = _rows(base / "two", "test_bpd")
  assert [s for s, _ in tests] == [6, 12, 18]
  np.testing.assert_allclose([v for _, v in tests], [v for _, v in _rows(base / "one", "test_bpd")],
                             rtol=1e-6)
  # Written once, by process 0: every step's row once, each sample grid once.
  assert _logged(base / "two") == list(range(1, STEPS + 1))
  assert sorted(p.name for p in (base / "two" / "samples").iterdir()) == \
      [f"step{s:07d}.png" for s in (6, 12, 18)]
  assert two.text.count("done: ") == 2  # both processes finished the run


def test_a_sigterm_to_one_process_stops_both_and_a_sigkill_ends_the_other(runs, tmp_path):
  base, _ = runs
  work, data_dir = tmp_path / "run", base / "data"
  # SIGTERM to process 1 alone: both stop at one step, after one checkpoint.
  run = Launch(work, data_dir)
  run.wait_for_step(2)
  os.kill(run.pids[1], signal.SIGTERM)
  assert run.finish() == 128 + signal.SIGTERM, run.text[-4000:]
  done = re.findall(r"\] done: step (\d+) \(\d+ this run\), stopped by (\w+)", run.text)
  assert len(done) == 2 and {why for _, why in done} == {"SIGTERM"}, run.text[-4000:]
  stopped = {int(s) for s, _ in done}
  assert len(stopped) == 1, done  # the same step on both
  (stop_step,) = stopped
  assert stop_step < STEPS and _state(work)[1]["step"] == stop_step
  assert {s for s, _ in run.exits().values()} == {128 + signal.SIGTERM}

  # Restarted, then SIGKILL of process 1: process 0 does not wait for it forever.
  run = Launch(work, data_dir)
  run.wait_for_step(stop_step + 3)
  os.kill(run.pids[1], signal.SIGKILL)
  killed_at = time.time()
  run.finish()
  survivor_status, _ = run.exits()[0]
  assert survivor_status != 0
  assert time.time() - killed_at < HEARTBEAT_S + 30, run.text[-4000:]
  assert "Task 1 heartbeat timeout" in run.text or "lost a peer process" in run.text, \
      run.text[-4000:]

  # Restarted again: it resumes from the last complete checkpoint and ends bitwise
  # equal to the uninterrupted two-process run.
  run = Launch(work, data_dir)
  assert run.finish() == 0, run.text[-4000:]
  resumed = {int(s) for s in re.findall(r"\] done: step \d+ \((\d+) this run\)", run.text)}
  assert len(resumed) == 1 and 0 < resumed.pop() < STEPS - stop_step
  got, got_meta = _state(work)
  want, want_meta = _state(base / "two")
  assert got_meta["step"] == want_meta["step"] and got_meta["data_state"] == want_meta["data_state"]
  chex.assert_trees_all_equal(want, got)
  assert _logged(work) == list(range(1, STEPS + 1))


CONFIGS = ["mnist", "msds1", "msds2", "cifar10", "celeba", "chairs"]


def test_loading_any_config_variant_starts_no_backend():
  """jax.distributed.initialize() must come before any backend: a config file that built
  a model (or an array) while loading would make every multi-process run fail."""
  code = (
      "import importlib, itertools, sys\n"
      "from jax._src import xla_bridge\n"
      "from configs import base\n"
      "mods = list(base.MODIFIERS)\n"
      "variants = [','.join(filter(None, (s, *m))) for s in ('', *base.SIZES)\n"
      "            for r in range(len(mods) + 1) for m in itertools.combinations(mods, r)]\n"
      f"for name in {CONFIGS!r}:\n"
      "  for v in variants:\n"
      "    importlib.import_module(f'configs.{name}').get_config(v)\n"
      "    assert not xla_bridge._backends, (name, v)\n"
      "print(len(variants))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert int(out.stdout.split()[-1]) >= 24  # sizes x subsets of the modifiers


def test_configs_listed_here_are_all_the_config_files():
  files = {p.stem for p in (ROOT / "configs").glob("*.py")} - {"__init__", "base"}
  assert files == set(CONFIGS)


@pytest.mark.parametrize("settings,env,message", [
    ({"num_processes": 2, "process_id": 2}, {}, "process id 2 is not in 0..1"),
    ({}, {"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "must be integers"),
])
def test_bad_process_settings_are_refused_before_anything_starts(monkeypatch, settings, env,
                                                                 message):
  from jax._src import distributed  # noqa: PLC0415
  from rgflow_jax import multihost  # noqa: PLC0415
  c = load_config("msds1")
  c.distributed = True
  c.coordinator_address = "127.0.0.1:1"
  for key, value in settings.items():
    c[key] = value
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  with pytest.raises(multihost.DistributedError, match=message):
    multihost.initialize(c)
  assert distributed.global_state.client is None  # nothing was started
