"""compare.py end to end on :smoke runs of RG-Flow and Real NVP, and the
analysis paths that differ for Real NVP."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, load_config, perturb, random_inception_weights, run_eval
from rgflow_jax.io import checkpoint, storage
from rgflow_jax.paper import inpainting
from rgflow_jax.run import jit_steps, run_config, trained, training


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Run folders of msds1 ``:smoke`` (RG-Flow) and ``:smoke,realnvp``.

  Real NVP is trained through ``train_and_evaluate`` (its training path); the RG-Flow
  checkpoint is written directly from perturbed (non-identity) parameters, as its
  training is covered by test_training.py and compiling it again would only cost time.
  """
  base = tmp_path_factory.mktemp("compare")
  out = {}
  for variant in ("smoke", "smoke,realnvp"):
    c = load_config("msds1", variant)
    c.data.location.data_dir = str(base / "data")
    c.train.samples.every = 0
    workdir = base / variant.replace(",", "_")
    if variant == "smoke":
      flow = run_config.build_model(c)
      state = jit_steps.init_state(flow, c, jnp.float32)
      state["params"] = perturb(state["params"], jax.random.PRNGKey(3), 0.1)
      ckpts = checkpoint.Checkpoints(workdir)
      ckpts.save(6, state, {"step": 6, "skipped_steps": 0, "best_test_bpd": None})
      ckpts.wait()
      ckpts.close()
      storage.write_json_atomic(workdir / "config.json", json.loads(c.to_json()))
    else:
      summary = training.train_and_evaluate(c, workdir)
      assert summary["step"] == c.train.num_steps and np.isfinite(summary["best_test_bpd"])
    out[variant] = (c, workdir)
  random_inception_weights(base / "inception.npz")
  return base, out


def test_realnvp_config_is_sized_to_the_rgflow_of_the_same_config():
  rg, rnvp = load_config("msds1", "cpu"), load_config("msds1", "cpu,realnvp")
  n_rg = run_config.build_model(rg).count_params()
  flow = run_config.build_model(rnvp)
  assert rnvp.model.name == "realnvp" and rnvp.model.target_params == n_rg
  assert abs(flow.count_params() - n_rg) / n_rg < 0.01
  assert load_config("msds1", "cpu,gaussian").model.prior == "gaussian"
  with pytest.raises(ValueError, match="variant 'cpu,smoke': cpu and smoke are both sizes"):
    load_config("msds1", "cpu,smoke")


def test_realnvp_has_no_cone_but_a_random_set_of_the_cone_size(runs):
  _, r = runs
  c, workdir = r["smoke,realnvp"]
  flow = trained.load_params(c, workdir).flow
  region = np.zeros((32, 32), bool)
  region[5:15, 7:17] = True
  with pytest.raises(ValueError, match="no causal cone"):
    inpainting.free_latents(flow, region, "cone")
  rg_flow = trained.load_params(*r["smoke"]).flow
  n_cone = inpainting.free_latents(rg_flow, region, "cone").sum()
  rnd = inpainting.free_latents(flow, region, "random", 0)
  assert rnd.sum() == n_cone and rnd.shape == (32, 32, 3)
  assert inpainting.free_latents(flow, region, "all").all()


def test_eval_modes_run_on_realnvp(runs):
  _, r = runs
  c, workdir = r["smoke,realnvp"]
  res = run_eval(c, workdir, "mix,progressive")
  assert (workdir / "eval" / "mix.png").exists() and (workdir / "eval" / "progressive.png").exists()
  assert res["num_params"] > 0


def test_compare_py_writes_every_table_and_figure(runs):
  """compare.py on the two runs (each with its own saved config, the smoke sizes of
  config.eval, and the settings given here); a run's figures equal evaluate()'s."""
  base, r = runs
  out = base / "cmp"
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  settings = {"bpd.draws": 1, "inpaint.images": 1, "fid.weights": str(base / "inception.npz")}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "compare.py"), f"--out={out}",
       *(f"--config.eval.{k}={v}" for k, v in settings.items()),
       str(r["smoke"][1]), str(r["smoke,realnvp"][1])],
      env=env, capture_output=True, text=True, cwd=base)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "deprecated" not in proc.stderr
  result = json.loads((out / "compare.json").read_text())
  labels = [row["label"] for row in result["runs"]]
  assert labels == ["RG-Flow + Laplace", "Real NVP + Laplace"]
  rg, rnvp = result["runs"]
  assert rg["inpaint"]["modes"] == ["cone"] and rnvp["inpaint"]["modes"] == ["random", "all"]
  # the constrained Real NVP frees as many latents as RG-Flow's cone holds
  assert rnvp["inpaint"]["mean_free_latents_random"] == rg["inpaint"]["mean_free_latents_cone"]
  assert rnvp["inpaint"]["mean_free_latents_all"] == 32 * 32 * 3
  for row in result["runs"]:
    assert np.isfinite(row["test_bpd"]["bpd"]) and row["paper_bpd"] is not None
    assert row["test_bpd"]["iw_bpd"] == pytest.approx(row["test_bpd"]["bpd"], rel=1e-6)  # 1 draw
    assert row["fid"]["images"] == 6 and row["fid"]["fid"] > 0 and row["paper_fid"] > 0
    for how in row["inpaint"]["modes"]:
      assert np.isfinite(row["inpaint"][f"mean_inception_psnr_{how}"])
    assert set(row["semantic"]) == {"colour_spread", "angle_spread"}
    assert set(row["rf"]) == {f"level{h}" for h in range(4)}
  for name in ["samples.png", "inpaint.png", "compare.md",
               "rg_flow_laplace/receptive_fields.png", "rg_flow_laplace/rf_strengths.png",
               "real_nvp_laplace/receptive_fields.png", "real_nvp_laplace/rf_strengths.png",
               "rg_flow_laplace/eval.json", "real_nvp_laplace/semantic_samples.npz"]:
    assert (out / name).stat().st_size > 0, name
  md = (out / "compare.md").read_text()
  assert md.count("| Real NVP + Laplace |") >= 2 + 4 and "Table F1" in md
  assert "| Real NVP + Laplace | random | " in md
  fid_cell = f"| {result['runs'][0]['fid']['fid']:.2f} | 1.16 |"  # ours, then the paper's
  assert fid_cell in md.splitlines()[4]
  # compare is evaluate per run: the RG-Flow run evaluated on its own with the same
  # settings gives the same figures (same keys, same images).
  c, workdir = r["smoke"]
  alone = run_eval(c, workdir, "bpd,semantic,fid,inpaint,rf", settings,
                   out_dir=base / "alone")

  def untimed(d):
    return {k: v for k, v in d.items() if "seconds" not in k}

  for key in ("test_bpd", "semantic", "fid", "rf", "step", "checkpoint"):
    assert alone[key] == rg[key], key
  assert untimed(alone["inpaint"] | {"rows": []}) == untimed(rg["inpaint"] | {"rows": []})
  assert [untimed(row) for row in alone["inpaint"]["rows"]] == \
      [untimed(row) for row in rg["inpaint"]["rows"]]


def test_eval_py_fid_and_inception_psnr(runs):
  """eval.py --mode fid (random Inception weights, smoke size), and Inception-PSNR, on
  the run's own config with --config.eval.* settings."""
  base, r = runs
  _, workdir = r["smoke"]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.run(
      [sys.executable, str(ROOT / "eval.py"), f"--workdir={workdir}",  # the run's config
       "--mode=fid,inpaint", f"--config.eval.fid.weights={base / 'inception.npz'}",
       "--config.eval.fid.temperature=0.8", "--config.eval.inpaint.images=1"],
      env=env, capture_output=True, text=True, cwd=base)
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads((workdir / "eval" / "eval.json").read_text())
  assert saved["fid"]["images"] == 6 and saved["fid"]["temperature"] == 0.8
  lines = proc.stdout.strip().splitlines()
  assert lines[0] == (f"FID: {saved['fid']['fid']:.2f} (6 samples at T = 0.8 against 6 test "
                      f"images; Inception weights {base / 'inception.npz'})")
  inp = saved["inpaint"]
  assert f"Inception-PSNR {inp['mean_inception_psnr_cone']:.2f} dB" in lines[1]
  # A missing weights file: one line, before any work.
  proc = subprocess.run(
      [sys.executable, str(ROOT / "eval.py"), "--config=msds1:smoke", f"--workdir={workdir}",
       "--mode=fid", f"--config.eval.fid.weights={base / 'none.npz'}"],
      env=env, capture_output=True, text=True, cwd=base)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: no Inception weights file {base / 'none.npz'}: give the FID Inception "
      "weights with --config.eval.fid.weights (docs/evaluation.md says how to get them)")


def test_compare_py_errors_are_one_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.run([sys.executable, str(ROOT / "compare.py"), str(tmp_path / "none")],
                        env=env, capture_output=True, text=True)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1].startswith("error: no trained run in")


def _compare_error(args) -> str:
  """compare.py's stderr, which must be one line, for a run that must fail."""
  proc = subprocess.run([sys.executable, str(ROOT / "compare.py"), *args],
                        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                        text=True)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


def test_compare_py_output_and_run_faults_are_one_line(runs, tmp_path):
  """--out naming a file, and a run folder whose config.json is damaged."""
  _, r = runs
  (tmp_path / "taken").write_text("a file, not a folder")
  line = _compare_error([f"--out={tmp_path / 'taken'}", str(r["smoke"][1])])
  assert line.startswith(f"error: cannot write to the output folder {tmp_path / 'taken'}")
  broken = tmp_path / "broken"
  (broken / "checkpoints").mkdir(parents=True)
  (broken / "config.json").write_text('{"model": ')
  line = _compare_error([f"--out={tmp_path / 'o'}", str(broken)])
  assert line.startswith(f"error: {broken / 'config.json'}: not valid JSON")
