"""Many processes, for real: two train.py processes (one CPU device each, gloo
collectives, JAX's coordination service on 127.0.0.1) started by
scripts/launch_local.py, against one process with two devices; a SIGTERM to one of
them, a SIGKILL of one, and the restarts."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, load_config
from rgflow_jax.io import checkpoint
from rgflow_jax.run import jit_steps, run_config

HEARTBEAT_S = 20  # generous: under a loaded 2-core machine a process can lag seconds
STEPS = 12


def _flags(workdir, data_dir, steps=STEPS):
  # 13 test images in global batches of 4: the last batch is one image, on process 0
  # only, so the processes' shares are unequal.
  return ["train.py", "--config", str(ROOT / "configs/msds1.py:smoke"), f"--workdir={workdir}",
          f"--config.data.location.data_dir={data_dir}", f"--config.train.num_steps={steps}",
          "--config.train.checkpoint.every=4", "--config.train.test.every=6",
          "--config.train.samples.every=6",
          "--config.train.log_every=1", "--config.train.test.images=13",
          "--config.eval.batch_size=4",
          f"--config.hosts.heartbeat_timeout_s={HEARTBEAT_S}"]


def _env(**extra):
  return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)


LAUNCHED = []


@pytest.fixture(autouse=True)
def _no_launch_left_running():
  yield
  while LAUNCHED:
    LAUNCHED.pop().stop()


class Launch:
  """scripts/launch_local.py -n 2 running train.py; its output collected as it comes."""

  def __init__(self, workdir, data_dir, *extra):
    self.workdir = workdir
    self.proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/launch_local.py"), "-n", "2", "--grace_s", "60",
         "--", *_flags(workdir, data_dir), *extra], cwd=ROOT, env=_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    self.lines, self.pids = [], {}
    threading.Thread(target=self._read, daemon=True).start()
    LAUNCHED.append(self)

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
      assert time.time() - start < timeout, f"no step {step} in {timeout} s:\n" + \
          self.text[-4000:]
      time.sleep(0.02)

  def finish(self, timeout=300):
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      raise AssertionError(f"still running after {timeout} s:\n{self.text[-4000:]}") from None
    time.sleep(0.2)  # the reader thread's last lines
    return self.proc.returncode

  def stop(self):
    """Ends a launch a failed test left running, its processes too (one stuck in a
    collective would not act on the SIGTERM the launcher's death sends it)."""
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()
    for pid in self.pids.values():
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass

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
  # Evaluated on both processes at steps 6 and 12 with unequal shares: the same test
  # bits/dim as one process computes on the same 13 images.
  tests = _rows(base / "two", "test_bpd")
  assert [s for s, _ in tests] == list(range(6, STEPS + 1, 6))
  np.testing.assert_allclose([v for _, v in tests], [v for _, v in _rows(base / "one", "test_bpd")],
                             rtol=1e-6)
  # Written once, by process 0: every step's row once, each sample grid once.
  assert _logged(base / "two") == list(range(1, STEPS + 1))
  assert sorted(p.name for p in (base / "two" / "samples").iterdir()) == \
      [f"step{s:07d}.png" for s in range(6, STEPS + 1, 6)]
  assert two.text.count("done: ") == 2  # both processes finished the run


@pytest.mark.campaign
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
  # room for the restart below to pass stop_step + 3 before it ends
  assert stop_step + 3 < STEPS and _state(work)[1]["step"] == stop_step
  assert {s for s, _ in run.exits().values()} == {128 + signal.SIGTERM}

  # Restarted, then SIGKILL of process 1: process 0 does not wait for it forever.
  run = Launch(work, data_dir)
  run.wait_for_step(stop_step + 3)
  os.kill(run.pids[1], signal.SIGKILL)
  killed_at = time.time()
  run.finish()
  survivor_status, _ = run.exits()[0]
  assert time.time() - killed_at < HEARTBEAT_S + 30, run.text[-4000:]
  # One line, exit status 1: not JAX's shutdown barrier, which would wait for the lost
  # peer, then abort with a C++ and a Python stack dump (status 134).
  assert survivor_status == 1, run.text[-4000:]
  survivor = [l for l in run.lines if l.startswith("[p0] ")]
  assert "lost a peer process" in survivor[-1], run.text[-4000:]
  assert not re.search("Fatal Python error|Check failure stack trace|Traceback", run.text)

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


@pytest.mark.campaign
def test_every_process_takes_one_decision_on_an_earlier_run(runs, tmp_path):
  """checkpoints/ deleted: both processes refuse in one line each with every file as it
  was; with --start_over process 0 moves the earlier run aside whole while the other
  waits, and both train from step 0."""
  base, _ = runs
  work = tmp_path / "run"
  shutil.copytree(base / "two", work)
  shutil.rmtree(work / "checkpoints")
  files = lambda folder: {p.relative_to(folder): p.read_bytes()  # noqa: E731
                          for p in sorted(folder.rglob("*"))
                          if p.is_file() and p.name != ".train.lock"}
  before = files(work)
  run = Launch(work, base / "data")
  assert run.finish() == 1, run.text[-4000:]
  refusals = [l for l in run.lines if "holds an earlier run but no checkpoint" in l]
  assert sorted(l[:4] for l in refusals) == ["[p0]", "[p1]"], run.text[-4000:]
  assert "Traceback" not in run.text and files(work) == before
  run = Launch(work, base / "data", "--start_over", "--config.train.num_steps=4")
  assert run.finish() == 0, run.text[-4000:]
  (earlier,) = (work / "earlier-runs").iterdir()
  assert files(earlier) == before
  assert _logged(work) == [1, 2, 3, 4]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train_cmd(workdir, *flags):
  return [sys.executable, str(ROOT / "train.py"), "--config", "msds1:smoke",
          f"--workdir={workdir}", "--config.hosts.distributed=True", *flags]


def _errors_of(procs: dict, timeout: float = 120) -> dict:
  """name -> (status, stderr lines) once every process has ended."""
  out = {}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=timeout)
    out[name] = proc.returncode, [l for l in err.splitlines() if l.strip()]
  return out


@pytest.mark.campaign
def test_start_up_faults_end_in_one_line_within_the_timeout(tmp_path):
  """Peers that never arrive, a coordinator host that does not resolve, a coordinator
  port another program holds: each one line and status 1, no C++ abort (JAX's own
  timeout aborts) and no traceback. Run side by side."""
  held = socket.socket()
  held.bind(("", 0))
  held.listen()
  busy, free = held.getsockname()[1], _free_port()
  cases = {
      "alone": (["--config.hosts.num_processes=2", "--config.hosts.process_id=0",
                 "--config.hosts.init_timeout_s=5",
                 f"--config.hosts.coordinator_address=127.0.0.1:{free}"],
                f"error: process 0 of 2: the run's processes did not all connect to the "
                f"coordinator 127.0.0.1:{free} within config.hosts.init_timeout_s=5 s"),
      "unresolved": (["--config.hosts.num_processes=2", "--config.hosts.process_id=1",
                      "--config.hosts.coordinator_address=no-such-host.invalid:1"],
                     "error: the coordinator host 'no-such-host.invalid' of "
                     "no-such-host.invalid:1 does not resolve"),
      "port in use": (["--config.hosts.num_processes=2", "--config.hosts.process_id=0",
                       f"--config.hosts.coordinator_address=127.0.0.1:{busy}"],
                      f"error: the coordinator port {busy} is in use on this host"),
  }
  start = time.time()
  procs = {name: subprocess.Popen(_train_cmd(tmp_path / name, *flags), cwd=tmp_path, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for name, (flags, _) in cases.items()}
  try:
    results = _errors_of(procs)
  finally:
    held.close()
  assert time.time() - start < 60  # the 5 s start-up timeout, not JAX's 35 s
  for name, (_, message) in cases.items():
    status, lines = results[name]
    assert status == 1 and len(lines) == 1 and lines[0].startswith(message), (name, lines)
    assert not (tmp_path / name).exists()  # nothing written


def test_processes_started_with_different_settings_refuse_in_one_line(tmp_path):
  """Two processes of one run, one with another num_steps: each says so in one line
  and exits before any step (they would otherwise wait for each other for ever)."""
  port = _free_port()
  procs = {i: subprocess.Popen(
      _train_cmd(tmp_path / "run", f"--config.train.num_steps={4 + 5 * i}",
                 f"--config.data.location.data_dir={tmp_path / 'data'}"),
      cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))) for i in (0, 1)}
  for i, (status, lines) in _errors_of(procs).items():
    assert status == 1 and lines[-1] == (
        "error: the processes of this run were started with different settings: "
        "train.num_steps 4 (process 0) vs 9 (process 1); start every process with the same "
        "command"), lines
    assert not any("Traceback" in l or "Fatal" in l for l in lines), lines
  assert not (tmp_path / "run" / "metrics.jsonl").exists()


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
  except FileNotFoundError:
    return False


@pytest.mark.campaign
def test_killing_the_launcher_ends_its_processes(tmp_path):
  """SIGKILL of scripts/launch_local.py: its processes get SIGTERM (Linux's parent-death
  signal) instead of running on as orphans that hold the run's lock."""
  child = tmp_path / "child.py"
  child.write_text("import time\nprint('up', flush=True)\ntime.sleep(300)\n")
  launcher = subprocess.Popen([sys.executable, str(ROOT / "scripts/launch_local.py"), "-n", "2",
                               "--", str(child)], stdout=subprocess.PIPE, text=True, env=_env())
  pids, up = [], 0
  for line in launcher.stdout:
    if m := re.match(r"\[launch\] process \d of 2: pid (\d+)", line):
      pids.append(int(m.group(1)))
    up += line.endswith("] up\n")
    if up == 2:
      break
  assert len(pids) == 2 and all(_alive(p) for p in pids)
  launcher.kill()
  launcher.wait()
  deadline = time.time() + 10
  while any(_alive(p) for p in pids) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(_alive(p) for p in pids)
