"""Training runs end to end: smoke runs on every kind of data, resumes (refused for another
model; a run saved by 43cc62e), the time limit, four devices against one, non-finite
steps, the device reads of the loop."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from helpers import ROOT, assert_gradients_close, run_eval, smoke_config, tensorboard_events
from rgflow_jax import data
from rgflow_jax.io import checkpoint
from rgflow_jax.run import jit_steps, run_config, trained, training


def _check_run_outputs(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert any("train_bpd" in r for r in rows) and any("test_bpd" in r for r in rows)
  assert all(np.isfinite(r.get("train_bpd", 0.0)) for r in rows)
  assert list((workdir / "samples").glob("*.png"))
  assert (workdir / "bpd_curve.png").exists()
  assert (workdir / "checkpoints").is_dir() and list((workdir / "checkpoints").iterdir())
  assert json.loads((workdir / "config.json").read_text())["model"]
  tb = tensorboard_events(workdir / "tensorboard")
  assert {"train/bpd", "test/bpd", "train/grad_norm", "train/lr", "speed/steps_per_s"} <= \
      set(tb.Tags()["scalars"])
  logged = {r["step"]: r for r in rows if "train_bpd" in r}
  for event in tb.Scalars("train/lr"):  # the numbers of metrics.jsonl, at its steps
    assert event.value == pytest.approx(logged[event.step]["lr"], rel=1e-6)
  assert [e.step for e in tb.Images("samples")] == \
      sorted(int(p.stem.removeprefix("step")) for p in (workdir / "samples").glob("*.png"))
  assert tb.Images("samples")[0].width > 32 * 8  # the titled grid, not one image
  from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: PLC0415
  start = plugin_data_pb2.HParamsPluginData.FromString(
      tb.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
  config = json.loads((workdir / "config.json").read_text())
  assert start.hparams["train.batch_size"].number_value == config["train"]["batch_size"]
  assert start.hparams["data.name"].string_value == config["data"]["name"]
  # Files get the process umask's mode (0644 under 022), as Orbax's checkpoint files do.
  umask = os.umask(0)
  os.umask(umask)
  for path in workdir.rglob("*"):
    if path.is_file() and path.name != ".train.lock":
      assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("name", ["msds1", "msds2"])
def test_smoke_run_msds(tmp_path, name, capsys):
  summary = training.train_and_evaluate(smoke_config(tmp_path, name), tmp_path / "run")
  assert summary["step"] == 6 and summary["stopped_by"] == "num_steps"
  assert np.isfinite(summary["best_test_bpd"])
  _check_run_outputs(tmp_path / "run")
  # Before the first step a line says what the wait is; the bar starts after it.
  err = capsys.readouterr().err.splitlines()
  compiling = [i for i, l in enumerate(err) if l.startswith("compiling the training step (")]
  compiled = [i for i, l in enumerate(err) if l.startswith("compiled in ")]
  assert any(l.startswith("ran step 1 in ") for l in err[compiled[0]:]), err
  assert len(compiling) == len(compiled) == 1 and compiling[0] < compiled[0], err


@pytest.mark.parametrize("name", ["celeba", "cifar10", "mnist"])
def test_smoke_run_tfds_mocked(tmp_path, name):
  with tfds.testing.mock_data(num_examples=64):
    summary = training.train_and_evaluate(smoke_config(tmp_path, name), tmp_path / "run")
  assert summary["step"] == 6
  _check_run_outputs(tmp_path / "run")


def test_smoke_run_image_folder(tmp_path):
  folder = tmp_path / "chairs"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(80):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
  c = smoke_config(tmp_path, "chairs")
  c.data.location.path = str(folder)
  c.data.test_fraction = 0.3
  summary = training.train_and_evaluate(c, tmp_path / "run")
  assert summary["step"] == 6
  _check_run_outputs(tmp_path / "run")


def test_resume_with_a_different_model_is_refused(tmp_path, caplog):
  c = smoke_config(tmp_path, num_steps=2, eval_every=2, ckpt_every=2, sample_every=0)
  training.train_and_evaluate(c, tmp_path / "run")
  c2 = smoke_config(tmp_path, num_steps=4, sample_every=0)
  c2.model.hidden = (12,)
  with pytest.raises(training.TrainingError, match="different config.model"):
    training.train_and_evaluate(c2, tmp_path / "run")
  # Settings that would silently make it another run (data order, schedule state).
  changed = smoke_config(tmp_path, num_steps=4, sample_every=0, batch_size=16)
  with pytest.raises(training.TrainingError, match="different config.train.batch_size "):
    training.train_and_evaluate(changed, tmp_path / "run")
  for key, value in [("seed", 1), ("train.optimizer.schedule", "cosine"),
                     ("train.optimizer.warmup_steps", 5), ("data.name", "msds2"),
                     ("data.n_train", 128), ("model.layer_order", "authors")]:
    changed = smoke_config(tmp_path, num_steps=4, sample_every=0, **{key: value})
    with pytest.raises(training.TrainingError, match=f"different config.{key} ") as err:
      run_config.check_resume_compatible(tmp_path / "run", changed)
    assert "\n" not in str(err.value)
  # Refused before any data is made (MSDS generation takes a minute at full size), by
  # training and by evaluation, which must be given the run's model and data set.
  other = smoke_config(tmp_path, **{"data.name": "msds2",
                                    "data.location.data_dir": str(tmp_path / "d2")})
  with pytest.raises(training.TrainingError, match="different config.data.name "):
    training.train_and_evaluate(other, tmp_path / "run")
  with pytest.raises(training.TrainingError, match=r"different config.data.name \(msds1 "
                     r"there, msds2 now\): evaluate it with its own config"):
    run_eval(other, tmp_path / "run", "bpd")
  assert not (tmp_path / "d2").exists()
  # The same model with a longer schedule, another learning rate and bfloat16 matmuls
  # resumes, and says what changed.
  c3 = smoke_config(tmp_path, num_steps=4, eval_every=2, ckpt_every=2, sample_every=0,
                    lr=5e-4)
  c3.execution.matmul_dtype = "bfloat16"
  with caplog.at_level("WARNING", logger="rgflow_jax.run.run_config"):
    assert training.train_and_evaluate(c3, tmp_path / "run")["steps_this_run"] == 2
  assert "lr 0.001 -> 0.0005" in caplog.text and "num_steps 2 -> 4" in caplog.text
  assert "matmul_dtype" not in caplog.text  # an execution option, not a change of run


def test_the_time_limit_is_the_run_s_over_its_launches(tmp_path, capsys):
  """The same command twice with time_limit_s: the first trains until the limit, the
  second finds it used and trains nothing (docs/training.md); a higher limit trains on."""
  c = smoke_config(tmp_path, num_steps=10**6, time_limit_s=2.0, log_every=5,
                   eval_every=10**6, ckpt_every=10**6, sample_every=0)
  first = training.train_and_evaluate(c, tmp_path / "run")
  assert first["stopped_by"] == "time_limit" and first["steps_this_run"] > 0
  again = training.train_and_evaluate(c, tmp_path / "run")
  assert again["stopped_by"] == "time_limit" and again["steps_this_run"] == 0
  assert again["step"] == first["step"]
  assert "nothing to train; raise --config.train.time_limit_s" in capsys.readouterr().err
  assert again["train_seconds"] == pytest.approx(first["train_seconds"], abs=1e-3)
  more = smoke_config(tmp_path, num_steps=10**6, time_limit_s=first["train_seconds"] + 2.0,
                      log_every=5, eval_every=10**6, ckpt_every=10**6, sample_every=0)
  on = training.train_and_evaluate(more, tmp_path / "run")
  assert on["stopped_by"] == "time_limit" and on["step"] > first["step"]
  assert on["train_seconds"] > more.train.time_limit_s


def test_a_run_saved_by_43cc62e_resumes_and_evaluates(tmp_path):
  """A run folder as main at 43cc62e (before the layer folders) left it: its config.json
  and metrics.jsonl verbatim, and a checkpoint with the arrays its checkpoint held
  (tests/fixtures/run_43cc62e/checkpoint.json lists them; the arrays' values are
  today's, so no checkpoint is kept in the repository)."""
  fixture = ROOT / "tests" / "fixtures" / "run_43cc62e"
  saved = json.loads((fixture / "config.json").read_text())
  saved["data"]["data_dir"] = str(tmp_path / "data")  # it was made in another folder
  old = json.loads((fixture / "checkpoint.json").read_text())
  run = tmp_path / "run"
  training.train_and_evaluate(ml_collections.ConfigDict(
      run_config.upgrade_saved_config(saved)), run)
  state = run / old["checkpoint"]
  written = json.loads((state / "array_metadatas" / "process_0").read_text())
  arrays = {a["array_metadata"]["param_name"]: a["array_metadata"]["write_shape"]
            for a in written["array_metadatas"]}
  assert arrays == old["arrays"]  # the same tree, names and shapes as 43cc62e saved
  meta = json.loads((state.parent / "meta" / "metadata").read_text())
  # What 43cc62e wrote, and since: the run's training seconds (time_limit_s per run).
  assert set(meta) - set(old["meta"]) == {"train_seconds"} and set(old["meta"]) <= set(meta)
  (run / "config.json").write_text(json.dumps(saved))
  (run / "metrics.jsonl").write_text((fixture / "metrics.jsonl").read_text())
  # The command that resumes it: today's config with the overrides the run was made with.
  now = smoke_config(tmp_path, num_steps=4, ckpt_every=2, eval_every=2, keep_checkpoints=1,
                     sample_every=0)
  summary = training.train_and_evaluate(now, run)
  assert (summary["step"], summary["steps_this_run"]) == (4, 2)
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert rows[:2] == [json.loads(l) for l in (fixture / "metrics.jsonl").read_text()
                      .splitlines()]
  assert {r["step"] for r in rows[2:]} == {4} and any("test_bpd" in r for r in rows[2:])
  results = run_eval(now, run, "bpd", {"checkpoint": "latest", "bpd.draws": 1})
  assert np.isfinite(results["test_bpd"]["bpd"]) and results["step"] == 4
  # compare reads it as today's
  assert json.loads(run_config.saved_config(run).model.to_json()) == json.loads(now.model.to_json())


# ------------------------------------------------------------- devices
DEVICE_SCRIPT = """
import json, sys
import jax, numpy as np
sys.path[:0] = [{root!r}, {root!r} + "/tests"]
from configs import msds1
from helpers import perturb, step_gradient
from rgflow_jax.run import jit_steps, run_config
flow = run_config.build_model(msds1.get_config("smoke"))
params = perturb(flow.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.05)
batch = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
print(json.dumps({{"devices": jax.device_count(),
                   **step_gradient(flow, params, batch, jit_steps.make_mesh())}}))
"""


def _run_on_devices(n):
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
  out = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT.format(root=str(ROOT))], env=env,
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_four_devices_give_the_gradient_of_one():
  """The data-parallel step (batch sharded over 4 devices, gradients all-reduced) has
  the loss and the gradient of one device, every entry, float32."""
  one, four = _run_on_devices(1), _run_on_devices(4)
  assert one["devices"] == 1 and four["devices"] == 4
  np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-6)
  assert_gradients_close(four["grad"], one["grad"])


def test_nonfinite_steps_in_a_row_stop_the_run_with_the_good_checkpoint(tmp_path, monkeypatch):
  real = data.train_batches

  class Poisoned:
    """The real pipeline for 4 batches, then NaN batches."""

    def __init__(self, *a, **kw):
      self.inner, self.n = real(*a, **kw), 0

    def __next__(self):
      self.n += 1
      batch = next(self.inner)
      # float32 throughout: the loop compiles its step for the first batch's type
      return batch.astype(np.float32) if self.n <= 4 else np.full(batch.shape, np.nan, np.float32)

    def get_state(self):
      return self.inner.get_state()

    def set_state(self, s):
      self.inner.set_state(s)

  monkeypatch.setattr(data, "train_batches", Poisoned)
  c = smoke_config(tmp_path, num_steps=50, max_nonfinite=3, ckpt_every=2, eval_every=1000,
                   sample_every=0)
  with pytest.raises(training.TrainingError, match="3 non-finite losses") as err:
    training.train_and_evaluate(c, tmp_path / "run")
  assert "last good checkpoint (step 6)" in str(err.value)
  flow = run_config.build_model(c)
  ckpts = checkpoint.Checkpoints(tmp_path / "run")
  state, meta = ckpts.restore(jit_steps.init_state(flow, c, jnp.float32))
  ckpts.close()
  assert meta["skipped_steps"] == 2  # steps 5 and 6, saved at 6; step 7 stopped the run
  assert all(np.isfinite(np.asarray(l)).all() for l in jax.tree.leaves(state["params"]))


# ------------------------------------------------- dispatch ahead, precision
def test_the_loop_reads_the_device_once_per_log_row_and_prefetches(tmp_path, monkeypatch):
  """Every device-to-host read goes through ``ArrayImpl._value``; count them per step."""
  from jax._src import array as jax_array  # noqa: PLC0415
  calls, reads, batches_before = [0], [], []
  real_value = jax_array.ArrayImpl._value
  monkeypatch.setattr(jax_array.ArrayImpl, "_value",
                      property(lambda self: (reads.append(calls[0]), real_value.fget(self))[1]))
  made = [0]
  real_batch = jit_steps.global_batch

  def counting_batch(local, mesh):
    made[0] += 1
    return real_batch(local, mesh)

  real_compile = jit_steps.compile_loop_step

  def compile_counted(*args, **kwargs):
    step, ex = real_compile(*args, **kwargs)

    def counted(state, window, batch):
      calls[0] += 1
      batches_before.append(made[0])
      return step(state, window, batch)
    return counted, ex

  monkeypatch.setattr(jit_steps, "global_batch", counting_batch)
  monkeypatch.setattr(jit_steps, "compile_loop_step", compile_counted)
  c = smoke_config(tmp_path, num_steps=12, log_every=4, eval_every=1000, ckpt_every=1000,
                   sample_every=0)
  summary = training.train_and_evaluate(c, tmp_path / "run")
  assert summary["step"] == 12
  per_step = [reads.count(k) for k in range(1, 12)]  # after step k, before step k + 1
  assert per_step == [1 if k % 4 == 0 else 0 for k in range(1, 12)], per_step
  # Step k is dispatched with batch k + 1 already on the device.
  assert all(n >= k + 1 for k, n in enumerate(batches_before, 1)), batches_before
  rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train_bpd" in r] == [4, 8, 12]
  assert all(np.isfinite(r["train_bpd"]) and r["skipped_steps"] == 0 for r in rows
             if "train_bpd" in r)


def test_a_nan_test_bpd_never_becomes_the_best_checkpoint(tmp_path):
  c = smoke_config(tmp_path, num_steps=6, eval_every=3, ckpt_every=3, sample_every=0)
  good = training.train_and_evaluate(c, tmp_path / "run")
  assert np.isfinite(good["best_test_bpd"])
  c = smoke_config(tmp_path, num_steps=9, eval_every=3, ckpt_every=3, sample_every=0, lr=1e6)
  exploded = training.train_and_evaluate(c, tmp_path / "run")
  rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  tests = {r["step"]: r["test_bpd"] for r in rows if "test_bpd" in r}
  assert not np.isfinite(tests[9])  # the learning rate really blew the model up
  assert exploded["best_test_bpd"] == good["best_test_bpd"]
  ckpts = checkpoint.Checkpoints(tmp_path / "run")
  best_step = ckpts.best.best_step()
  ckpts.close()
  assert best_step in (3, 6) and np.isfinite(tests[best_step])
  flow, params, step, *_ = trained.load_params(c, tmp_path / "run", "best")
  assert step == best_step
  assert all(np.isfinite(np.asarray(l)).all() for l in jax.tree.leaves(params))
