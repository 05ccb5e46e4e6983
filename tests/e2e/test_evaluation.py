"""evaluate(), eval.py's library function: every mode on a smoke run, its outputs and errors."""

import json

import numpy as np
import pytest

from helpers import run_eval, smoke_config, tensorboard_events
from rgflow_jax.run import evaluation, training


def test_evaluate_all_modes_on_a_smoke_checkpoint(tmp_path):
  c = smoke_config(tmp_path)
  training.train_and_evaluate(c, tmp_path / "run")
  out = tmp_path / "run" / "eval"
  told = []  # each mode's line as it ends, with the figures there at that moment
  results = run_eval(  # the smoke config's eval section: 2 draws, 2 inpaintings, ...
      c, tmp_path / "run", "all",
      on_mode=lambda line: told.append((line, {p.name for p in out.iterdir()})))
  for name in ["samples_T1.0.png", "samples_T0.0.png", "samples_mixed_T.png",
               "progressive.png", "receptive_fields.png", "rf_strengths.png",
               "traverse_level0.png", "traverse_level3.png", "traverse.gif", "mix.png",
               "inpaint.png", "bpd_curve.png", "semantic_samples.png", "explorer.html",
               "samples.npz",
               "inpaint.npz", "semantic_samples.npz", "eval.json"]:
    assert (out / name).exists(), name
  saved = json.loads((out / "eval.json").read_text())
  assert saved["test_bpd"]["images"] == c.data.n_test
  assert np.isfinite(saved["test_bpd"]["bpd"]) and len(saved["test_bpd"]["draws"]) == 2
  assert set(saved["rf"]) == {f"level{h}" for h in range(4)}
  assert results["step"] == c.train.num_steps
  rows = saved["inpaint"]["rows"]
  assert len(rows) == 2 and all(np.isfinite(r["psnr_cone"]) for r in rows)
  assert all(0 < r["free_latents_cone"] < 32 * 32 * 3 for r in rows)
  # RG-Flow inpaints on its cone's blocks, and the time of each image is reported.
  assert all(r["local_cone"] and r["seconds_cone"] > 0 for r in rows)
  assert saved["inpaint"]["median_seconds_cone"] > 0
  # What the command prints: one line per mode, in order, then where eval.json is.
  lines = evaluation.summary_lines(results)
  starts = {"bpd": "test bits/dim: ", "samples": "samples: ", "progressive": "progressive ",
            "rf": "receptive fields: ", "traverse": "traversals ", "mix": "level mixing ",
            "explorer": "explorer file: ",
            "inpaint": "inpainting (free: cone; ", "curve": "bits/dim against ",
            "semantic": "semantic scores of 16 samples "}
  ran = [m for m in evaluation.MODES if m != "fid"]  # fid needs Inception weights
  assert saved["modes"] == ran
  assert [l.split()[0] for l in lines[:-1]] == [starts[m].split()[0] for m in ran]
  for line, name in zip(lines, ran):
    assert line.startswith(starts[name]) and "\n" not in line, line
  assert [line for line, _ in told] == lines[:-1]
  there = dict(zip(ran, (files for _, files in told), strict=True))
  assert "samples_T1.0.png" in there["samples"] and "mix.png" not in there["samples"]
  assert "mix.png" in there["mix"] and "inpaint.png" not in there["mix"]
  iw = saved["test_bpd"]["iw_bpd"]
  assert iw <= saved["test_bpd"]["bpd"] and saved["test_bpd"]["iw_stderr"] > 0
  assert (f"+- {saved['test_bpd']['stderr']:.4f} (2 draws), importance-weighted over the "
          f"draws {iw:.4f} +- {saved['test_bpd']['iw_stderr']:.4f} (over images), "
          f"{c.data.n_test} images") in lines[0]
  assert lines[-1] == (f"eval: step {c.train.num_steps} (best checkpoint); every number in "
                       f"{out}/eval.json")
  # The figures went to the run's TensorBoard too, at the evaluated step.
  tb = tensorboard_events(tmp_path / "run" / "tensorboard")
  assert {"eval/receptive_fields", "eval/samples_T1.0", "eval/inpaint"} <= \
      set(tb.Tags()["images"])
  assert [e.step for e in tb.Images("eval/receptive_fields")] == [c.train.num_steps]
  # bits/dim on a user's .npz, and a clear error for a wrong shape.
  imgs = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "mine.npz", images=imgs)
  r = run_eval(c, tmp_path / "run", "bpd", {"bpd.images": str(tmp_path / "mine.npz"),
                                             "bpd.draws": 1})
  assert r["test_bpd"]["images"] == 10
  np.savez(tmp_path / "small.npz", images=imgs[:, :16, :16])
  with pytest.raises(ValueError, match="model expects"):
    run_eval(c, tmp_path / "run", "bpd", {"bpd.images": str(tmp_path / "small.npz")})
  with pytest.raises(ValueError, match="unknown eval mode"):
    run_eval(c, tmp_path / "run", "fidd")
  with pytest.raises(ValueError, match="mode fid needs the Inception weights"):
    run_eval(c, tmp_path / "run", "fid")
  with pytest.raises(ValueError, match="config.eval.bpd.draws must be >= 1"):
    run_eval(c, tmp_path / "run", "bpd", {"bpd.draws": 0})
  with pytest.raises(ValueError, match="config.eval.checkpoint must be best, latest or a"):
    run_eval(c, tmp_path / "run", "bpd", {"checkpoint": "newest"})
  with pytest.raises(FileNotFoundError, match="train first"):
    run_eval(c, tmp_path / "nothing", "bpd")
