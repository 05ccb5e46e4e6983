"""Checkpoint faults. Damaged files in the latest checkpoint (flipped bytes, a
truncated or a deleted file) are detected on restore; training and evaluation fall
back to the newest intact checkpoint, name the damaged one and set it aside, and the
resumed run ends bitwise equal to one that never met the damage. Kills at random
moments (and one between the latest and the best save) keep the true best and the
uninterrupted parameters; a full disk stops the run in one line."""

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax.numpy as jnp
import pytest

from helpers import ROOT, load_config, smoke_config
from rgflow_jax.io import checkpoint
from rgflow_jax.run import jit_steps, run_config, trained, training


def _train(tmp_path, workdir, steps):
  c = smoke_config(tmp_path, num_steps=steps, ckpt_every=2, eval_every=100, sample_every=0,
                   log_every=2)
  return c, training.train_and_evaluate(c, workdir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A run stopped at step 6 (checkpoints 2, 4, 6), and the same run carried to 8."""
  base = tmp_path_factory.mktemp("ckpt")
  _train(base, base / "at6", 6)
  _, summary = _train(base, base / "to8", 8)
  assert summary["step"] == 8
  return base


def _params(c, workdir, step=None):
  flow = run_config.build_model(c)
  ckpts = checkpoint.Checkpoints(workdir, read_only=True)
  state, meta = ckpts.restore(jit_steps.init_state(flow, c, jnp.float32), step)
  ckpts.close()
  return state["params"], meta


def _largest_file(folder):
  return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip(folder):
  f = _largest_file(folder / "state")
  raw = bytearray(f.read_bytes())
  mid = len(raw) // 2
  raw[mid:mid + 64] = bytes(b ^ 0xFF for b in raw[mid:mid + 64])
  f.write_bytes(bytes(raw))


def _truncate(folder):
  f = _largest_file(folder / "state")
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_meta(folder):
  (folder / "meta" / "metadata").unlink()


def _delete_manifest(folder):
  for f in (folder / "state").rglob("manifest.ocdbt"):
    f.unlink()


DAMAGES = [_flip, _truncate, _delete_meta, _delete_manifest]


@pytest.mark.parametrize("damage", DAMAGES)
def test_evaluation_skips_a_damaged_latest_checkpoint(runs, tmp_path, damage, caplog):
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  damage(work / "checkpoints" / "6")
  c = smoke_config(runs)
  # Evaluation (read-only) skips the damaged one and reads step 4, moving nothing.
  with caplog.at_level(logging.WARNING, logger="rgflow_jax.io.checkpoint"):
    _, params, step, *_ = trained.load_params(c, work, "latest")
  assert step == 4 and "checkpoint damaged, skipped" in caplog.text
  assert "checkpoints/6" in caplog.text
  assert (work / "checkpoints" / "6").is_dir() and not (work / "damaged").exists()
  want, _ = _params(c, runs / "at6", step=4)
  chex.assert_trees_all_equal(want, params)


@pytest.mark.campaign
@pytest.mark.parametrize("damage", [_flip, _delete_manifest])
def test_resume_falls_back_to_the_newest_intact_checkpoint(runs, tmp_path, damage, caplog):
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  damage(work / "checkpoints" / "6")
  c = smoke_config(runs, num_steps=8, ckpt_every=2, eval_every=100, sample_every=0,
                   log_every=2)
  with caplog.at_level(logging.WARNING, logger="rgflow_jax.io.checkpoint"):
    summary = training.train_and_evaluate(c, work)
  assert summary["steps_this_run"] == 4  # resumed from step 4, not 6 and not 0
  assert "checkpoints/6" in caplog.text and "set aside" in caplog.text
  (aside,) = (work / "damaged").iterdir()
  assert aside.name.startswith("checkpoints-6-")  # kept for a person to look at
  got, got_meta = _params(c, work)
  want, want_meta = _params(c, runs / "to8")
  assert got_meta["step"] == want_meta["step"] == 8
  assert got_meta["data_state"] == want_meta["data_state"]
  chex.assert_trees_all_equal(want, got)  # bitwise


def _tree_bytes(folder) -> dict:
  """Every file's bytes but the run lock's (each trainer writes its pid there)."""
  return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file() and p.name != ".train.lock"}


def test_a_model_of_other_shapes_is_refused_in_one_line_and_nothing_moved(runs, tmp_path):
  """Without config.json (deleted), a resume or an evaluation with another width must
  not take the intact checkpoints for damaged ones: one line naming the differing
  parameter shapes, and the run exactly as it was."""
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  (work / "config.json").unlink()
  before = _tree_bytes(work)
  wider = smoke_config(runs, num_steps=8, ckpt_every=2, eval_every=100, sample_every=0,
                       log_every=2, **{"model.hidden": (12,)})
  for attempt in (lambda: training.train_and_evaluate(wider, work),
                  lambda: trained.load_params(wider, work, "best")):
    with pytest.raises(checkpoint.IncompatibleCheckpoint) as err:
      attempt()
    message = str(err.value)
    assert "\n" not in message and "other parameter shapes than this config's" in message
    assert re.search(r"params\['level0'\]\['(dec|dis)'\]\['layers'\]\[0\]\['b'\] "
                     r"\(1, 2, 1, 8\) saved, \(1, 2, 1, 12\) now", message), message
    assert not (work / "damaged").exists()
  assert _tree_bytes(work) == before  # nothing moved, nothing written


@pytest.mark.campaign
def test_damaged_checkpoints_are_named_in_a_line_without_walls_of_tracebacks(runs, tmp_path):
  """Orbax's failed reads leave hundreds of asyncio tracebacks ("Event loop is closed")
  behind the one line that names the damage: eval.py on a truncated best/ and train.py
  resuming past a checkpoint without its OCDBT manifest print a few lines each."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  common = ["--config", "msds1:smoke", f"--config.data.location.data_dir={runs / 'data'}"]
  work = tmp_path / "eval"
  shutil.copytree(runs / "at6", work)
  _truncate(work / "best" / "6")
  evaluated = subprocess.run([sys.executable, str(ROOT / "eval.py"), *common,
                              f"--workdir={work}", "--mode=bpd", "--config.eval.bpd.draws=1"],
                             env=env, capture_output=True, text=True, timeout=300)
  work = tmp_path / "train"
  shutil.copytree(runs / "at6", work)
  _delete_manifest(work / "checkpoints" / "6")
  resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), *common,
                            f"--workdir={work}", "--config.train.num_steps=7"],
                           env=env, capture_output=True, text=True, timeout=300)
  for out, named in ((evaluated, "checkpoint damaged, skipped"),
                     (resumed, "checkpoint damaged, set aside")):
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    assert any(named in l for l in lines) and len(lines) <= 8, lines
    assert "Traceback" not in out.stderr and "Event loop is closed" not in out.stderr


def test_readable_files_whose_values_differ_from_the_digest_are_refused(runs, tmp_path):
  """The digest itself is checked: every file of step 6 intact and readable, but the
  digest saved with it names other values (what a silent bit flip inside a stored array
  amounts to once it decodes)."""
  import json  # noqa: PLC0415
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  c = smoke_config(runs)
  like = jit_steps.init_state(run_config.build_model(c), c, jnp.float32)
  ckpts = checkpoint.Checkpoints(work, read_only=True)
  state, _ = ckpts.restore(like, 6)  # intact: its digest matches
  meta_file = work / "checkpoints" / "6" / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  assert meta["state_sha256"] == checkpoint.state_digest(state)
  meta["state_sha256"] = checkpoint.state_digest(like)  # the digest of other values
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpoint.DamagedCheckpoint, match="does not match the digest"):
    ckpts.restore(like, 6)
  ckpts.close()


def test_evaluation_opens_a_training_run_read_only(runs, tmp_path, caplog):
  """eval.py and compare.py on a run that is training: the writer's unfinished
  checkpoint folder must survive the reader (Orbax's cleanup would delete it), and
  Orbax's notes that a read-only manager is read-only are not printed."""
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  in_progress = work / "checkpoints" / "8.orbax-checkpoint-tmp-1796000000000000"
  (in_progress / "state").mkdir(parents=True)
  (in_progress / "state" / "partial").write_bytes(b"being written")
  c = smoke_config(runs)
  for which in ("latest", "best"):
    with caplog.at_level(logging.INFO):
      step = trained.load_params(c, work, which).step
    assert step == 6
  assert "checkpoint_manager" in {r.module for r in caplog.records}  # Orbax did log ...
  for note in checkpoint._ReadOnlyNotes.NOTES:  # ... but not its read-only notes
    assert note not in caplog.text
  assert (in_progress / "state" / "partial").read_bytes() == b"being written"
  ro = checkpoint.Checkpoints(work, read_only=True)
  with pytest.raises(RuntimeError, match="read-only"):
    ro.save(10, {}, {})
  ro.close()


class _Killed(BaseException):
  """What a SIGKILL amounts to for the code after it: nothing more runs."""


@pytest.mark.campaign
def test_a_kill_between_the_latest_and_the_best_save_loses_no_best(tmp_path, monkeypatch,
                                                                    caplog):
  c = smoke_config(tmp_path, num_steps=2, ckpt_every=2, eval_every=2, sample_every=0,
                   log_every=2)
  work = tmp_path / "run"
  save = checkpoint.Checkpoints.save

  def save_then_die(self, step, state, meta, test_bpd=None):
    def killed(*args, **kwargs):
      raise _Killed
    monkeypatch.setattr(self.best, "save", killed)  # dies once the latest is committed
    return save(self, step, state, meta, test_bpd)

  monkeypatch.setattr(checkpoint.Checkpoints, "save", save_then_die)
  with pytest.raises(_Killed):
    training.train_and_evaluate(c, work)
  monkeypatch.undo()
  assert [p.name for p in (work / "checkpoints").iterdir()] == ["2"]
  assert not list((work / "best").iterdir())  # the evaluation's best was not written
  with caplog.at_level(logging.WARNING, logger="rgflow_jax.io.checkpoint"):
    summary = training.train_and_evaluate(c, work)  # the rerun has no step left to train
  assert summary["steps_this_run"] == 0 and "best/ lacks it" in caplog.text
  ckpts = checkpoint.Checkpoints(work, read_only=True)
  assert ckpts.best.best_step() == 2
  like = jit_steps.init_state(run_config.build_model(c), c, jnp.float32)
  best, best_meta = ckpts.restore(like, best=True)  # intact: its digest matches
  last, _ = ckpts.restore(like)
  ckpts.close()
  assert best_meta["test_bpd"] == best_meta["best_test_bpd"]
  chex.assert_trees_all_equal(last, best)


# --------------------------------------------------------------- random kills
def _train_cmd(workdir, data_dir, steps):
  return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/msds1.py:smoke"),
          f"--workdir={workdir}", f"--config.data.location.data_dir={data_dir}",
          f"--config.train.num_steps={steps}", f"--config.train.checkpoint.every={CKPT_EVERY}",
          "--config.train.log_every=1", "--config.train.test.every=3",
          "--config.train.test.images=8",
          "--config.train.samples.every=0"]


def _rows(workdir, key):
  path = workdir / "metrics.jsonl"
  lines = path.read_text().splitlines() if path.exists() else []
  return [(r["step"], r[key]) for r in map(json.loads, filter(str.strip, lines)) if key in r]


def _wait_for(predicate, proc, timeout=240):
  start = time.time()
  while not predicate():
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() - start < timeout, "timed out"
    time.sleep(0.02)


CKPT_EVERY = 2


@pytest.mark.campaign
def test_random_kills_keep_the_true_best_and_the_uninterrupted_params(tmp_path):
  """Four SIGKILLs at random moments of a run that saves every 2 steps and evaluates
  every 3 (two while it starts up and restores, two while it trains, evaluates or
  saves), and a SIGTERM: the run ends bitwise equal to an uninterrupted one, each kill
  loses at most one interval, every step and evaluation is logged once, and best/ holds
  the true best evaluation with its very parameters."""
  steps, env = 27, dict(os.environ, PYTHONPATH=str(ROOT))
  data_dir, ref, work = tmp_path / "data", tmp_path / "ref", tmp_path / "killed"
  subprocess.run(_train_cmd(ref, data_dir, steps), env=env, check=True, capture_output=True)
  rng = random.Random(0)
  for when in ("start-up", "training", "SIGTERM", "start-up", "training"):
    logged = _rows(work, "train_bpd")
    top = logged[-1][0] if logged else 0
    proc = subprocess.Popen(_train_cmd(work, data_dir, steps), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if when != "start-up":  # once this life has trained a step of its own
      _wait_for(lambda: _rows(work, "train_bpd")[-1:] not in ([], logged[-1:]), proc)
      deadline = time.time() + rng.uniform(0.0, 1.2)
    else:  # from the start
      deadline = time.time() + rng.uniform(0.3, 5.0)
    # ...and at most 2 steps past the furthest any life got, so that it never finishes.
    _wait_for(lambda: time.time() > deadline or  # noqa: B023
              max(s for s, _ in _rows(work, "train_bpd") or [(0, 0)]) >= top + 2, proc)
    if when == "SIGTERM":  # one polite stop: it saves exactly where it stands, exit 128 + 15
      proc.send_signal(signal.SIGTERM)
      out, _ = proc.communicate(timeout=120)
      assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
      assert _final_params(work)[1]["step"] == _rows(work, "train_bpd")[-1][0]
      continue
    proc.kill()
    proc.wait()
    logged = _rows(work, "train_bpd")
    ckpts = checkpoint.Checkpoints(work, read_only=True)
    if logged and ckpts.latest_step() is not None:
      assert logged[-1][0] - ckpts.latest_step() <= CKPT_EVERY  # at most one interval lost
    ckpts.close()
  subprocess.run(_train_cmd(work, data_dir, steps), env=env, check=True, capture_output=True)

  got, got_meta = _final_params(work)
  want, want_meta = _final_params(ref)
  assert got_meta["step"] == want_meta["step"] == steps
  assert got_meta["data_state"] == want_meta["data_state"]
  _assert_equal(want, got)
  assert [s for s, _ in _rows(work, "train_bpd")] == list(range(1, steps + 1))
  tests = _rows(work, "test_bpd")
  assert tests == _rows(ref, "test_bpd")  # each evaluation once, and the same values
  assert [s for s, _ in tests] == list(range(3, steps + 1, 3))
  best_step = min(tests, key=lambda t: t[1])[0]
  ckpts = checkpoint.Checkpoints(work, read_only=True)
  assert ckpts.best.all_steps() == [best_step]
  ckpts.close()
  _assert_equal(_final_params(ref, best=True)[0], _final_params(work, best=True)[0])
  assert not (work / "damaged").exists()  # no kill ever left a checkpoint half-written


def _final_params(workdir, best=False):
  c = load_config("msds1")
  ckpts = checkpoint.Checkpoints(workdir, read_only=True)
  state, meta = ckpts.restore(jit_steps.init_state(run_config.build_model(c), c, jnp.float32),
                              best=best)
  ckpts.close()
  return state["params"], meta


def _assert_equal(want, got):
  chex.assert_trees_all_equal(want, got)  # bitwise


# ------------------------------------------------------------------ a full disk
def _can_mount_a_tmpfs() -> bool:
  return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def test_a_full_disk_stops_the_run_in_one_line_before_a_partial_checkpoint(tmp_path):
  """The workdir on a 1.2 MiB tmpfs (mounted in a user namespace: no root needed): the
  run stops at the first checkpoint that would not fit, in one line, with nothing of
  that checkpoint written and the previous one intact."""
  if not _can_mount_a_tmpfs():
    pytest.skip("this kernel refuses unprivileged user namespaces (unshare -rm), which "
                "the test needs to mount a small tmpfs")
  disk, copy = tmp_path / "disk", tmp_path / "copy"
  disk.mkdir()
  train = " ".join(_train_cmd(disk / "run", tmp_path / "data", 40))
  script = (f"mount -t tmpfs -o size=1200k tmpfs {disk} && {{ {train}; echo rc=$?; "
            f"cp -a {disk}/run {copy}; }}")
  out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert "rc=1" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert re.fullmatch(r"error: not enough disk space for checkpoint (\d+): about [\d.]+ MiB "
                      rf"needed in {disk}/run/checkpoints, [\d.]+ MiB free; free some space "
                      r"\(or lower config.train.checkpoint.keep\) and rerun to resume from the "
                      r"last checkpoint", last), last
  failed_at = int(re.search(r"checkpoint (\d+)", last).group(1))
  ckpts = checkpoint.Checkpoints(copy, read_only=True)
  saved = ckpts.last.all_steps()
  assert saved and max(saved) < failed_at
  assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == sorted(map(str, saved))
  ckpts.close()
  _final_params(copy)  # the newest one restores intact (digest checked)


def test_load_gives_a_trained_run_for_the_functional_api(runs):
  """rgflow_jax.load(workdir): the run's own config, its parameters bound to their flow
  (best, latest or a step), ready for receptive_field(params, level, idx)."""
  import jax  # noqa: PLC0415

  import rgflow_jax  # noqa: PLC0415
  work = runs / "at6"
  c = smoke_config(runs)
  run = rgflow_jax.load(work, "latest")
  assert (run.step, run.checkpoint) == (6, "latest")
  assert run.flow == run_config.build_model(c) == run.params.flow
  assert json.loads(run.config.to_json()) == json.loads(
      run_config.saved_config(work).to_json())
  chex.assert_trees_all_equal(run.params.tree, _params(c, work)[0])
  at4 = rgflow_jax.load(str(work), 4)
  assert (at4.step, at4.checkpoint) == (4, "step")
  chex.assert_trees_all_equal(at4.params.tree, _params(c, work, step=4)[0])
  assert rgflow_jax.load(work).step in (6, 4)  # best, or the latest where none was saved
  rf = rgflow_jax.receptive_field(run.params, 1, 0)
  assert isinstance(rf, jax.Array) and rf.shape == (run.flow.image_size,) * 2
  assert float(rf.sum()) > 0
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 5; it has steps \[2, 4, 6\]"):
    rgflow_jax.load(work, 5)
