"""The paper's comparisons side by side, from trained run folders (behind compare.py).

For every workdir: parameters, test bits/dim (Table B1 / G1; the single-draw mean and
the importance-weighted estimate), FID with Inception weights, MSDS semantic scores of
samples against real test images (colour and orientation spread per image), inpainting
PSNR and, with Inception weights, Inception-PSNR (Table F1: cone-constrained RG-Flow,
randomly constrained and unconstrained Real NVP, on the same images and regions),
receptive-field maps and strength histograms (Fig. 5c / C1), and a sample grid with a
row per model (Fig. B2). Writes ``compare.json``, ``compare.md`` (the tables) and the
figures to ``out``, and each run's evaluation to a folder of its own beside them.

compare composes :func:`rgflow_jax.run.evaluation.evaluate`: every figure of a run is
the one rgflow-eval gives for that run with the same ``config.eval`` settings (same
keys, same images).
"""

from __future__ import annotations

import io
import re

import numpy as np

from rgflow_jax import data
from rgflow_jax.io import figures, storage
from rgflow_jax.run import evaluation, run_config

# The paper's reported figures to print beside ours: test bits/dim per data set and
# model (Tables B1, G1; RG-Flow's with its prior), FID likewise, and Table F1's inpainting
# PSNR and Inception-PSNR (CelebA).
PAPER_BPD = {
    "msds1": {"rgflow/laplace": 0.906, "rgflow/gaussian": 1.60, "realnvp/laplace": 1.07},
    "msds2": {"rgflow/laplace": 1.01, "rgflow/gaussian": 1.53, "realnvp/laplace": 1.14},
    "celeba": {"rgflow/laplace": 3.47, "realnvp/laplace": 3.36},
    "cifar10": {"rgflow/laplace": 3.35, "realnvp/laplace": 3.61},
    "folder": {"rgflow/laplace": 0.930, "realnvp/laplace": 0.933},  # 3D Chairs
}
PAPER_FID = {
    "msds1": {"rgflow/laplace": 1.16, "rgflow/gaussian": 7.42, "realnvp/laplace": 50.4},
    "msds2": {"rgflow/laplace": 2.61, "rgflow/gaussian": 7.16, "realnvp/laplace": 78.0},
    "celeba": {"rgflow/laplace": 31.3, "realnvp/laplace": 11.1},
    "cifar10": {"rgflow/laplace": 98.5, "realnvp/laplace": 126.0},
    "folder": {"rgflow/laplace": 36.2, "realnvp/laplace": 73.8},
}
PAPER_INPAINT_PSNR = {"rgflow/cone": 38.7, "realnvp/random": 23.2, "realnvp/all": 37.0}
PAPER_INCEPTION_PSNR = {"rgflow/cone": 24.9, "realnvp/random": 15.7, "realnvp/all": 24.8}
MODEL_NAMES = {"rgflow": "RG-Flow", "realnvp": "Real NVP"}


def _label(config) -> str:
  name = config.model.name
  return f"{MODEL_NAMES.get(name, name)} + {config.model.prior.capitalize()}"


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _fmt(v, digits=3):
  if v is None or (isinstance(v, float) and not np.isfinite(v)):
    return "-"
  return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def compare_modes(config) -> tuple[str, ...]:
  """The evaluation modes compare runs on a run of ``config``: test bits/dim, the MSDS
  semantic scores (elsewhere the sample grids, for the figure's row), FID with Inception
  weights, inpainting and receptive fields."""
  return (("bpd", "semantic" if config.data.name in evaluation.SEMANTIC_DATA else "samples")
          + (("fid",) if config.eval.fid.weights else ()) + ("inpaint", "rf"))


def compare(workdirs, out, overrides: dict | None = None) -> dict:
  """Evaluate each run in ``workdirs`` with its own saved config and the shared
  ``overrides`` (``{"eval.inpaint.steps": 10, ...}``, keys of ``config.eval``) into
  ``<out>/<run label>/`` (what rgflow-eval writes for the same run and settings), then
  set the runs side by side in ``out``: compare.json, compare.md and the figures."""
  if len(workdirs) < 1:
    raise ValueError("compare needs at least one run folder")
  overrides = dict(overrides or {})
  bad = sorted(k for k in overrides if not k.startswith("eval.") or k == "eval.modes")
  if bad:
    raise ValueError(f"compare takes only config.eval settings (not {', '.join(bad)}): it "
                     "evaluates each run with its own config and its own choice of modes")
  out = storage.check_writable(out, "output folder")
  configs = [run_config.with_overrides(run_config.saved_config(w), overrides)
             for w in workdirs]
  data_names = {c.data.name for c in configs}
  if len(data_names) > 1:
    raise ValueError(f"the runs were trained on different data sets {sorted(data_names)}: "
                     "compare runs of one data set at a time")
  data_name = data_names.pop()
  labels = [_label(c) for c in configs]
  if len(set(labels)) < len(labels):  # two runs of one kind: tell them apart
    labels = [f"{lab} ({storage.as_path(w).name})"
              for lab, w in zip(labels, workdirs, strict=True)]

  rows, sample_rows, inpaint_panels = [], [], []
  for workdir, config, label in zip(workdirs, configs, labels, strict=True):
    config.eval.modes = ",".join(compare_modes(config))
    run_out = out / _slug(label)
    r = evaluation.evaluate(config, workdir, out_dir=run_out)
    kind = config.model.name
    rows.append({
        "label": label, "workdir": str(workdir), "folder": _slug(label), "model": kind,
        "prior": config.model.prior, "params": r["num_params"],
        "target_params": config.model.target_params if "target_params" in config.model
                         else None,
        "step": r["step"], "checkpoint": r["checkpoint"],
        "paper_bpd": PAPER_BPD.get(data_name, {}).get(f"{kind}/{config.model.prior}"),
        "paper_fid": PAPER_FID.get(data_name, {}).get(f"{kind}/{config.model.prior}"),
        "test_bpd": r["test_bpd"], "semantic": r.get("semantic"), "fid": r.get("fid"),
        "inpaint": r["inpaint"], "rf": r["rf"]})
    samples = (_npz(run_out / "semantic_samples.npz")["samples"] if "semantic" in r
               else _npz(run_out / "samples.npz")["T1.0"])
    sample_rows.append(samples[:8])
    panels = _npz(run_out / "inpaint.npz")["panels"]
    inpaint_panels.append(panels.reshape((-1, len(r["inpaint"]["columns"]))
                                         + panels.shape[1:]))

  if data_name in evaluation.SEMANTIC_DATA:  # a first row of real test images
    src = data.make_source(configs[0].data, "test", 32, 3, bool(configs[0].progress))
    sample_rows.insert(0, np.stack([src[i] for i in range(min(8, len(src)))]))
  figures.save_grid(np.concatenate(sample_rows), out / "samples.png", ncol=8)
  # truth and corrupted once (every run inpaints the same images), then each run's modes
  panels = np.concatenate([inpaint_panels[0][:, :2]] + [p[:, 2:] for p in inpaint_panels],
                          axis=1)
  figures.save_grid(panels.reshape((-1,) + panels.shape[2:]), out / "inpaint.png",
                  ncol=panels.shape[1])
  result = {"data": data_name, "runs": rows, "overrides": overrides,
            "figures": {"samples": "samples.png (first row: real test images, then one "
                                   "row of T = 1 samples per run)",
                        "inpaint": "inpaint.png (columns: truth, corrupted, then each "
                                   "run's inpainting modes in order)",
                        "runs": "<folder>/: each run's evaluation (eval.json, receptive "
                                "fields, samples, inpainting), as rgflow-eval writes it"}}
  storage.write_json_atomic(out / "compare.json", result)
  storage.write_text_atomic(out / "compare.md", tables_markdown(result))
  return result


def _npz(path) -> dict:
  with np.load(io.BytesIO(storage.as_path(path).read_bytes())) as z:
    return dict(z)


def tables_markdown(result: dict) -> str:
  rows, lines = result["runs"], []
  lines += [f"## Test bits/dim, FID and MSDS semantic scores ({result['data']})", "",
            "| run | parameters | steps | test BPD | importance-weighted BPD | paper BPD "
            "| FID | paper FID | colour spread, median (real) | share in real band | "
            "orientation spread, median (real) | share in real band |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    sem, fid_row = r.get("semantic"), r.get("fid")
    cells = [r["label"], f"{r['params']:,}", str(r["step"]),
             f"{r['test_bpd']['bpd']:.3f}", f"{r['test_bpd']['iw_bpd']:.3f}",
             _fmt(r["paper_bpd"]), _fmt(fid_row["fid"] if fid_row else None, 2),
             _fmt(r.get("paper_fid"), 2)]
    if sem:
      c, a = sem["colour_spread"], sem["angle_spread"]
      cells += [f"{c['median_generated']:.1f} ({c['median_real']:.1f})",
                f"{c['share_in_band']:.2f}",
                f"{a['median_generated']:.1f} deg ({a['median_real']:.1f})",
                f"{a['share_in_band']:.2f}"]
    else:
      cells += ["-"] * 4
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Spreads are per image over its 16 ovals (colour: mean over channels of "
            "the standard deviation, 0-255; orientation: circular standard deviation of "
            "the axes). The band is the real test images' 95th percentile. FID (with "
            "--config.eval.fid.weights): samples at T = 1 against as many test images; the "
            "importance-weighted BPD is over the dequantisation draws.", "",
            "## Inpainting a 10 x 10 region (Table F1)", "",
            "| run | latents freed | mean number freed | PSNR (dB) | paper PSNR (CelebA) | "
            "Inception-PSNR (dB) | paper Inception-PSNR |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    inp = r["inpaint"]
    for how in inp["modes"]:
      key = r["model"] + "/" + how
      lines.append(f"| {r['label']} | {how} | {inp[f'mean_free_latents_{how}']:.0f} | "
                   f"{inp[f'mean_psnr_{how}']:.2f} | {_fmt(PAPER_INPAINT_PSNR.get(key), 1)} | "
                   f"{_fmt(inp.get(f'mean_inception_psnr_{how}'), 2)} | "
                   f"{_fmt(PAPER_INCEPTION_PSNR.get(key), 1)} |")
  if rows:
    inp = rows[0]["inpaint"]
    lines.append(f"| corrupted input | - | - | {inp['mean_psnr_corrupted']:.2f} | - | "
                 f"{_fmt(inp.get('mean_inception_psnr_corrupted'), 2)} | - |")
  lines += ["", "## Receptive fields (Fig. 5c, C1)", "",
            "| run | level | median strength | max strength | pixels holding half of the "
            "strongest map |", "|---|---|---|---|---|"]
  for r in rows:
    for level, v in r["rf"].items():
      lines.append(f"| {r['label']} | {level[5:]} | {v['median_strength']:.3f} | "
                   f"{v['max_strength']:.3f} | {v['top_map_pixels_for_half_mass']} |")
  return "\n".join(lines) + "\n"


def check_workdirs(workdirs) -> list:
  paths = [storage.as_path(w) for w in workdirs]
  missing = [str(p) for p in paths if not (p / "checkpoints").is_dir()]
  if missing:
    raise FileNotFoundError(f"no trained run in {', '.join(missing)}: train first "
                            "(python train.py --config ... --workdir DIR)")
  return paths

