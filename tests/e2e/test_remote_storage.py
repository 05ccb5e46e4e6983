"""A run whose every file lives in an object store: train, SIGKILL, resume and evaluate
against a local GCS emulator (gcp-storage-emulator on 127.0.0.1), gcsfs for files and
Orbax's tensorstore for checkpoint arrays; nothing may land on local disk."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from rgflow_jax.io import runlock, storage

BUCKET = "rgflow-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """The emulator's environment for clients: gcsfs reads STORAGE_EMULATOR_HOST,
  tensorstore TENSORSTORE_GCS_HTTP_URL and a fixed test token instead of credentials."""
  port = _free_port()
  log = open(tmp_path_factory.mktemp("gcs") / "emulator.log", "w")
  server = subprocess.Popen(
      [sys.executable, str(ROOT / "tests" / "e2e" / "gcs_emulator.py"), str(port), BUCKET],
      stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 30
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
      break
    except OSError:
      assert server.poll() is None and time.time() < deadline, "emulator did not start"
      time.sleep(0.1)
  url = f"http://127.0.0.1:{port}"
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GOOGLE_CLOUD_PROJECT": "test"}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # for this process's own reads of the store
  yield env
  for k, v in old.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.terminate()
  server.wait(timeout=10)
  log.close()


def _logged_steps(metrics) -> list[int]:
  import fsspec  # noqa: PLC0415
  fsspec.filesystem("gs").invalidate_cache()  # another process writes the file
  try:
    text = storage.as_path(metrics).read_text()
  except OSError:
    return []
  return [json.loads(l)["step"] for l in text.splitlines() if l.strip() and "train_bpd" in l]


@pytest.mark.campaign
def test_train_kill_resume_and_eval_all_in_the_object_store(gcs, tmp_path):
  workdir, data_dir = f"gs://{BUCKET}/runs/smoke", f"gs://{BUCKET}/data"
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = {**os.environ, **gcs, "PYTHONPATH": str(ROOT)}
  steps = 20
  train = [sys.executable, str(ROOT / "train.py"), "--config",
           str(ROOT / "configs/msds1.py:smoke"), f"--workdir={workdir}",
           f"--config.data.location.data_dir={data_dir}", f"--config.train.num_steps={steps}",
           "--config.train.checkpoint.every=3", "--config.train.log_every=1",
           "--config.train.test.every=10",
           "--config.train.samples.every=10"]
  proc = subprocess.Popen(train, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  start = time.time()
  while max(_logged_steps(f"{workdir}/metrics.jsonl"), default=0) < 7:
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() - start < 240, "timed out"
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(_logged_steps(f"{workdir}/metrics.jsonl"))
  assert killed_at < steps

  out = subprocess.run(train, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  last = out.stdout.strip().splitlines()[-1]
  done = re.fullmatch(r"done: step (\d+) \((\d+) this run\), .*", last)
  assert done and int(done.group(1)) == steps, out.stdout[-2000:]
  resumed_from = steps - int(done.group(2))
  assert 0 < resumed_from <= killed_at and killed_at - resumed_from <= 3  # one interval
  assert _logged_steps(f"{workdir}/metrics.jsonl") == list(range(1, steps + 1))

  out = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--config",
                        str(ROOT / "configs/msds1.py:smoke"), f"--workdir={workdir}",
                        f"--config.data.location.data_dir={data_dir}", "--mode=bpd,samples",
                        "--config.eval.bpd.draws=2"], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  run = storage.as_path(workdir)
  result = json.loads((run / "eval" / "eval.json").read_text())
  assert result["step"] in (10, 20) and result["test_bpd"]["images"] == 32
  names = {p.name for p in (run / "eval").iterdir()}
  assert {"samples_T1.0.png", "samples_T0.0.png", "eval.json"} <= names
  assert {p.name for p in (run / "samples").iterdir()} == {"step0000010.png", "step0000020.png"}
  assert {"config.json", "bpd_curve.png", "checkpoints", "best"} <= {p.name for p in run.iterdir()}
  assert max(int(p.name) for p in (run / "checkpoints").iterdir()) == steps
  assert not (run / runlock.LOCK_NAME).exists()  # the killed one's lease, taken over, released
  assert list((storage.as_path(data_dir) / "msds1").iterdir())  # the MSDS cache too
  from tensorboard.backend.event_processing import event_file_loader  # noqa: PLC0415
  tags = set()
  for i, f in enumerate((run / "tensorboard").iterdir()):
    local = tmp_path / f"events{i}"
    local.write_bytes(f.read_bytes())
    tags |= {v.tag for e in event_file_loader.EventFileLoader(str(local)).Load() for v in e.summary.value}
  assert {"train/bpd", "test/bpd", "train/grad_norm", "train/lr"} <= tags
  assert [p.name for p in cwd.iterdir()] == []  # nothing written to local disk


def test_a_workdir_the_store_refuses_is_a_one_line_error(gcs, tmp_path):
  """A bucket that does not exist (as a wrong name or missing rights look to a client):
  train.py stops at the start, in one line, before building anything."""
  env = {**os.environ, **gcs, "PYTHONPATH": str(ROOT)}
  out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config",
                        str(ROOT / "configs/msds1.py:smoke"), "--workdir=gs://no-such-bucket/x"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: cannot write to the workdir gs://no-such-bucket/x"), \
      out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert [p.name for p in tmp_path.iterdir()] == []


def test_a_prepared_tfds_set_in_the_store_asks_to_be_copied_to_local_disk(gcs):
  from rgflow_jax import data  # noqa: PLC0415
  prepared = storage.as_path(f"gs://{BUCKET}/tfds/celeb_a/2.1.0/dataset_info.json")
  prepared.write_text("{}")
  with pytest.raises(data.DataError) as err:
    data.TfdsSource("celeba", "train", f"gs://{BUCKET}/tfds")
  message = str(err.value)
  assert "\n" not in message and "is not prepared" not in message
  assert (f"python -m rgflow_jax.data.prepare celeba --copy_from gs://{BUCKET}/tfds "
          "--data_dir data") in message
  with pytest.raises(data.DataError, match="celeba is not prepared"):
    data.TfdsSource("celeba", "train", f"gs://{BUCKET}/elsewhere")


def test_each_host_copies_a_prepared_set_from_the_store_once(gcs, tmp_path):
  """The many-hosts recipe's data step: the prepared folder from gs:// to local disk,
  whole (a copy killed half-way is redone, never taken as done), once per host."""
  files = {"celeb_a/2.1.0/dataset_info.json": b"{}",
           "celeb_a/2.1.0/celeb_a-train.array_record-00000-of-00001": os.urandom(5000),
           "celeb_a/2.1.0/features.json": b'{"f": 1}'}
  for name, data in files.items():
    storage.as_path(f"gs://{BUCKET}/data/{name}").write_bytes(data)
  local = tmp_path / "data"
  (local / ".celeb_a.partial" / "2.1.0").mkdir(parents=True)  # a copy that was killed
  (local / ".celeb_a.partial" / "2.1.0" / "features.json").write_bytes(b"half")
  cmd = [sys.executable, "-m", "rgflow_jax.data.prepare", "celeba", "--copy_from",
         f"gs://{BUCKET}/data", "--data_dir", str(local)]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  first = subprocess.run(cmd, capture_output=True, text=True, env=env)
  assert first.returncode == 0 and "copied 3 files of celeba" in first.stdout, first.stderr
  for name, data in files.items():
    assert (local / name).read_bytes() == data
  assert sorted(p.name for p in local.iterdir()) == ["celeb_a"]
  again = subprocess.run(cmd, capture_output=True, text=True, env=env)
  assert again.returncode == 0 and again.stdout == ""
  missing = subprocess.run(cmd[:5] + [f"gs://{BUCKET}/nothing", "--data_dir",
                                      str(tmp_path / "other")],
                           capture_output=True, text=True, env=env)
  assert missing.returncode == 1 and missing.stderr.startswith(
      f"error: no prepared celeba at gs://{BUCKET}/nothing/celeb_a")


# ------------------------------------------------------------- the run lock as a lease
def _lease(workdir):
  return storage.as_path(workdir) / runlock.LOCK_NAME


def test_the_remote_run_lock_is_a_lease_one_trainer_holds(gcs):
  workdir = f"gs://{BUCKET}/locks/one"
  with runlock.RunLock(workdir):
    held = json.loads(_lease(workdir).read_text())
    assert held["pid"] == os.getpid() and held["renewed"] <= time.time()
    with pytest.raises(runlock.RunLocked) as err:
      runlock.RunLock(workdir).__enter__()
    assert f"pid {os.getpid()} on {socket.gethostname()}" in str(err.value)
    assert "lease renewed" in str(err.value) and "\n" not in str(err.value)
  assert not _lease(workdir).exists()  # released on exit


def test_of_many_trainers_starting_at_once_one_takes_the_lease(gcs):
  """The store's compare-and-swap (a write only if the object is absent) decides."""
  import concurrent.futures  # noqa: PLC0415
  workdir = f"gs://{BUCKET}/locks/race"
  locks = [runlock.RunLock(workdir) for _ in range(6)]

  def take(lock):
    try:
      lock.__enter__()
      return True
    except runlock.RunLocked:
      return False

  with concurrent.futures.ThreadPoolExecutor(len(locks)) as pool:
    won = list(pool.map(take, locks))
  assert won.count(True) == 1
  locks[won.index(True)].__exit__(None, None, None)
  assert not _lease(workdir).exists()


@pytest.mark.parametrize("age_s, pid, taken", [
    (1000.0, 1, True),      # expired: its holder stopped renewing long ago
    (1.0, 1, False),        # fresh, on another host: refused
    (1.0, None, True),      # fresh, but its process on this host is gone
])
def test_a_lease_left_by_a_dead_trainer_is_taken_over(gcs, age_s, pid, taken):
  workdir = f"gs://{BUCKET}/locks/stale-{age_s}-{pid}"
  host = "another-host" if pid else socket.gethostname()
  if pid is None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = dead.pid
  _lease(workdir).write_text(json.dumps(
      {"pid": pid, "host": host, "since": "then", "renewed": time.time() - age_s}))
  lock = runlock.RunLock(workdir, lease_s=60)
  if not taken:
    with pytest.raises(runlock.RunLocked, match=f"pid {pid} on another-host"):
      lock.__enter__()
    return
  with lock:
    assert json.loads(_lease(workdir).read_text())["pid"] == os.getpid()


def test_a_trainer_whose_lease_was_taken_over_knows_it(gcs):
  workdir = f"gs://{BUCKET}/locks/lost"
  with runlock.RunLock(workdir, lease_s=1.0) as lock:
    assert not lock.lost
    _lease(workdir).write_text(json.dumps(  # another trainer took it over
        {"pid": 1, "host": "another-host", "since": "now", "renewed": time.time()}))
    deadline = time.time() + 10
    while not lock.lost and time.time() < deadline:  # found at the next renewal
      time.sleep(0.05)
    assert lock.lost
  assert json.loads(_lease(workdir).read_text())["host"] == "another-host"  # theirs stays
