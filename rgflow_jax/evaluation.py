"""Evaluation of a trained run: ``evaluate(config, workdir, modes)``, behind eval.py.

Modes: ``bpd`` (test bits/dim over several dequantisation draws: mean and standard
error), ``samples`` (grids at several temperatures), ``rf`` (receptive-field maps of
the strongest latents per level and the strength histograms), ``curve`` (the training
bits/dim curve), ``all``. Every number goes to ``<workdir>/eval/eval.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import checkpoint, data, pixels, plots, receptive, training

MODES = ("bpd", "samples", "rf", "curve")


def load_params(config, workdir, which: str = "best"):
  """(flow, params, step) from the run's best (default) or latest checkpoint."""
  if which not in ("best", "latest"):
    raise ValueError(f"checkpoint must be 'best' or 'latest', got {which!r}")
  workdir = Path(workdir)
  if not (workdir / "checkpoints").is_dir():
    raise FileNotFoundError(f"no checkpoints in {workdir}: train first "
                            f"(python train.py --config ... --workdir {workdir})")
  training.check_resume_compatible(workdir, config)
  flow = training.build_model(config)
  state = training.init_state(flow, config, training.param_dtype(config))
  ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
  try:
    use_best = which == "best" and ckpts.best.best_step() is not None
    state, meta = ckpts.restore(state, best=use_best)
  finally:
    ckpts.close()
  return flow, state["params"], int(meta["step"])


def test_bpd(flow, params, images_source, batch_size: int, draws: int, rng,
             max_images: int | None = None, progress: bool = True):
  """Per-draw mean bits/dim over the set, their mean and standard error."""
  mesh = training.make_mesh()
  eval_step = training.make_eval_step(flow, mesh)
  per_draw = []
  iterator = range(draws)
  if progress:
    from tqdm.auto import tqdm
    iterator = tqdm(iterator, desc="test bits/dim", unit="draw")
  for d in iterator:
    batches = data.eval_batches(images_source, batch_size, max_images)
    bpd, n = training.evaluate_bpd(flow, params, batches, mesh, jax.random.fold_in(rng, d),
                                   eval_step)
    per_draw.append(bpd)
  per_draw = np.asarray(per_draw)
  stderr = float(per_draw.std(ddof=1) / np.sqrt(draws)) if draws > 1 else float("nan")
  return {"bpd": float(per_draw.mean()), "stderr": stderr, "draws": per_draw.tolist(),
          "images": n}


def evaluate(config, workdir, modes=("all",), images_npz: str | None = None,
             which: str = "best", draws: int = 4, max_images: int | None = None,
             rf_samples: int = 8, progress: bool = True) -> dict:
  modes = MODES if "all" in modes else tuple(modes)
  unknown = set(modes) - set(MODES)
  if unknown:
    raise ValueError(f"unknown eval mode(s) {sorted(unknown)}; choose from {MODES + ('all',)}")
  workdir = Path(workdir)
  out_dir = workdir / "eval"
  out_dir.mkdir(parents=True, exist_ok=True)
  flow, params, step = load_params(config, workdir, which)
  rng = jax.random.PRNGKey(config.seed + 777)
  results = {"step": step, "checkpoint": which, "num_params": flow.num_params(params)}

  if "bpd" in modes:
    if images_npz:
      source = data.ArraySource(data.load_npz(images_npz), images_npz)
    else:
      source = data.make_source(config.data, "test", flow.image_size, progress)
    data.check_source_shape(source, flow.image_size, flow.channels)
    results["test_bpd"] = test_bpd(flow, params, source, config.eval_batch_size, draws,
                                   jax.random.fold_in(rng, 1), max_images, progress)

  if "samples" in modes:
    sample = jax.jit(flow.sample, static_argnums=2)
    for t in (1.0, 0.8, 0.5, 0.0):
      imgs = pixels.to_uint8(sample(params, jax.random.fold_in(rng, 2), 64, t))
      plots.save_grid(np.asarray(imgs), out_dir / f"samples_T{t:.1f}.png", ncol=8)
    results["samples"] = [f"samples_T{t:.1f}.png" for t in (1.0, 0.8, 0.5, 0.0)]

  if "rf" in modes:
    strengths, maps, titles = {}, [], []
    for level in range(flow.num_levels):
      latents, s = receptive.receptive_field_strengths(
          flow, params, level, jax.random.fold_in(rng, 3), n_samples=max(2, rf_samples // 2))
      strengths[f"level {level}"] = s
      top = latents[np.argsort(-s)[:6]]
      rfs = receptive.receptive_fields(flow, params, top, jax.random.fold_in(rng, 4),
                                       rf_samples)
      maps.extend(rfs)
      titles.extend(f"h={level} ({i},{j},{c})" for i, j, c in top)
      results.setdefault("rf", {})[f"level{level}"] = {
          "median_strength": float(np.median(s)), "max_strength": float(s.max()),
          "count_strength_above_1": int((s > 1).sum()), "top": top.tolist()}
    plots.plot_maps(np.stack(maps), titles, out_dir / "receptive_fields.png", ncol=6)
    plots.plot_histograms(strengths, out_dir / "rf_strengths.png",
                          "receptive-field strength (sum of the map)")

  if "curve" in modes:
    plots.plot_bpd_curve(workdir / "metrics.jsonl", out_dir / "bpd_curve.png",
                         training.reference_curves(config))

  checkpoint.save_json_atomic(out_dir / "eval.json", results)
  return results
