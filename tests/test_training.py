"""Training end to end: smoke runs of every config, resume policy,
multi-device equivalence, the NaN guard and config errors."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from helpers import (ROOT, UNIT_BATCH, load_config, perturb, run_eval, smoke_config,
                     step_gradient, tensorboard_events, unit_config)
from rgflow_jax import data
from rgflow_jax.configs import base
from rgflow_jax.core import execution
from rgflow_jax.core.execution import Execution
from rgflow_jax.io import checkpoint, metrics, storage
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


@pytest.mark.e2e
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


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["celeba", "cifar10", "mnist"])
def test_smoke_run_tfds_mocked(tmp_path, name):
  with tfds.testing.mock_data(num_examples=64):
    summary = training.train_and_evaluate(smoke_config(tmp_path, name), tmp_path / "run")
  assert summary["step"] == 6
  _check_run_outputs(tmp_path / "run")


@pytest.mark.e2e
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


def test_every_config_has_its_variants():
  for name in ("msds1", "msds2", "celeba", "cifar10", "mnist", "chairs"):
    for variant in ("", "cpu", "smoke", "smoke,realnvp", "cpu,gaussian"):
      c = load_config(name, variant)
      run_config.validate_config(c)
      flow = run_config.build_model(c)
      assert flow.image_size == 32
    with pytest.raises(ValueError, match="variant 'huge': unknown variant 'huge'"):
      load_config(name, "huge")
  paper = run_config.build_model(load_config("celeba", ""))
  assert paper.n_layers == (8, 6, 4, 2) and paper.hidden == (512,) * 4


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.parametrize("text,words", [
    ("[1, 2]", "not a JSON object but a list"),
    ('{"model": [8]}', "\"model\" is [8], not a JSON object"),
    ('{"model": {"name": "glow"}}', "\"model.name\" is 'glow', not one of"),
    ('{"num_steps": "10"}', "\"num_steps\" is '10', not an integer"),
    ('{"model": ', "not valid JSON"),
])
def test_a_malformed_saved_config_is_one_line_naming_it(tmp_path, text, words):
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(storage.RunFileError) as err:
    run_config.read_saved_config(tmp_path)
  assert str(err.value).startswith(f"{tmp_path / 'config.json'}: ") and words in str(err.value)
  assert "\n" not in str(err.value)


def test_a_config_of_the_flat_layout_upgrades_to_today_key_by_key(tmp_path):
  """Every key the flat layout had (base.MOVED_KEYS), put back where it was with a value
  of its own, lands in its section with that value; data.channels is dropped."""
  now = json.loads(smoke_config(tmp_path).to_json())
  flat = json.loads(json.dumps(now))
  for i, (old, new) in enumerate(base.MOVED_KEYS.items()):
    *parents, leaf = new.split(".")
    node, want = flat, now
    for part in parents:
      node, want = node[part], want[part]
    value = node.pop(leaf)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      want[leaf] = value = value + i + 1  # each key's own value
    section, _, name = old.rpartition(".")
    (flat[section] if section else flat)[name] = value
  flat["data"]["channels"] = 3
  for section in ("train", "hosts"):  # the flat layout had neither
    assert not metrics.flatten(flat.pop(section)), section  # (no key left in them)
  assert run_config.upgrade_saved_config(flat) == now


def test_a_run_saved_before_the_layer_order_and_execution_keys_resumes_as_it_was(tmp_path):
  saved = json.loads(smoke_config(tmp_path).to_json())
  del saved["model"]["layer_order"]  # what config.json held before the option existed
  # ... and when the execution options were model keys:
  ex = saved.pop("execution")
  saved["model"].update({k: ex[k] for k in execution.FIELDS}, matmul_dtype="bfloat16",
                        remat=True)
  saved.update({k: ex[k] for k in execution.PROGRAM_KEYS})  # top-level keys then
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
  run_config.check_resume_compatible(tmp_path / "run", smoke_config(tmp_path))
  old = ml_collections.ConfigDict(run_config.read_saved_config(tmp_path / "run"))
  assert run_config.build_model(old) == run_config.build_model(smoke_config(tmp_path))
  assert Execution.from_config(old.execution) == Execution(remat=True, matmul_dtype="bfloat16")
  assert "execution" not in saved and "remat" in saved["model"]  # the input is unchanged
  rnvp = json.loads(load_config("msds1", "smoke,realnvp").to_json())
  del rnvp["train"]["checkpoint"]["lock_lease_s"]  # a key a run may predate: the default
  up = run_config.upgrade_saved_config(rnvp)
  assert "layer_order" not in up["model"] and up["train"]["checkpoint"]["lock_lease_s"] == 300
  authors = smoke_config(tmp_path, **{"model.layer_order": "authors"})
  with pytest.raises(training.TrainingError, match="different config.model.layer_order"):
    run_config.check_resume_compatible(tmp_path / "run", authors)


@pytest.mark.e2e
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


def _assert_gradients_close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert np.abs(want).max() > 1e-3  # a gradient worth comparing
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.e2e
def test_four_devices_give_the_gradient_of_one():
  """The data-parallel step (batch sharded over 4 devices, gradients all-reduced) has
  the loss and the gradient of one device, every entry, float32."""
  one, four = _run_on_devices(1), _run_on_devices(4)
  assert one["devices"] == 1 and four["devices"] == 4
  np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-6)
  _assert_gradients_close(four["grad"], one["grad"])


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
  _assert_gradients_close(hand["grad"], auto["grad"])
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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_train_script_reports_missing_data_in_one_line(tmp_path):
  out = subprocess.run(
      [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/celeba.py:smoke"),
       f"--workdir={tmp_path / 'run'}", f"--config.data.location.data_dir={tmp_path}"],
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: celeba is not prepared") and "Traceback" not in out.stderr
  assert 'pip install "rgflow-jax[prepare]"' in last and "mmlab.ie.cuhk.edu.hk" in last
  assert "WARNING" not in out.stderr  # no tfds warning about a folder that is not there
  assert not (tmp_path / "run").exists()  # the failed start left no run folder


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
@pytest.mark.parametrize("flag,message", [
    ("--config.eval.bpd.draws=0", "config.eval.bpd.draws must be >= 1"),
    ("--config.eval.bpd.max_images=-3", "config.eval.bpd.max_images must be >= 0 (0: all)"),
    ("--draws=0", "config.eval.bpd.draws must be >= 1"),  # the old flag, as its key
])
def test_eval_settings_out_of_range_are_refused_before_any_work(tmp_path, flag, message):
  out = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--config",
                        str(ROOT / "configs/msds1.py:smoke"), f"--workdir={tmp_path}", flag],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  assert out.stderr.strip().splitlines()[-1] == f"error: {message}", out.stderr[-2000:]
  assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args,message", [
    (["--config", "configs/nope.py"], "error: cannot load --config configs/nope.py: [Errno 2]"),
    (["--config", "configs/msds1.py:bogus"], "error: bad command line: variant 'bogus': "
                                             "unknown variant 'bogus'; give at most one size"),
    (["--config", "configs/msds1.py:smoke", "--config.no_such_key=1"],
     "error: bad command line: no config key 'no_such_key'"),
    (["--config", "msds1:smoke", "--config.train.batchsize=3"],
     "error: bad command line: no config key 'batchsize'; Did you mean \"batch_size\""),
    (["--config", "msds3:smoke"], "error: bad command line: unknown config 'msds3': use one "
                                  "of celeba, chairs, cifar10, mnist, msds1, msds2"),
    (["--config", "configs/msds1.py:smoke", "--config.train.batch_size=abc"],
     "error: bad command line: flag --config.train.batch_size=abc"),
    (["--config", "configs/msds1.py:smoke", "--workdir=WORKDIR_IS_A_FILE"],
     "error: cannot write to the workdir"),
])
@pytest.mark.e2e
def test_train_script_command_line_faults_are_one_line(tmp_path, args, message):
  (tmp_path / "file").write_text("x")
  args = [a.replace("WORKDIR_IS_A_FILE", str(tmp_path / "file")) for a in args]
  out = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), out.stderr[-2000:]


@pytest.mark.e2e
def test_a_second_trainer_on_one_workdir_is_refused_naming_the_holder(tmp_path):
  from rgflow_jax.io import runlock  # noqa: PLC0415
  workdir = tmp_path / "run"
  workdir.mkdir()
  cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/msds1.py:smoke"),
         f"--workdir={workdir}", f"--config.data.location.data_dir={tmp_path / 'data'}"]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  with runlock.RunLock(workdir):  # this process is the trainer now
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {workdir} is being trained by pid "
                                                 f"{os.getpid()} on "), out.stderr[-2000:]
  assert not (workdir / "metrics.jsonl").exists()  # the refused trainer wrote nothing
  probe = ("import sys; from rgflow_jax.io import runlock\n"
           f"with runlock.RunLock({str(workdir)!r}): print('locked')")
  assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                        check=True).stdout.strip() == "locked"  # released on exit


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
