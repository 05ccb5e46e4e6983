"""Evaluation of a trained run: ``evaluate(config, workdir)``, behind rgflow-eval and
rgflow-compare. Everything it does is read from ``config.eval`` (the modes, the
checkpoint, a section of options per mode: rgflow_jax/configs/base.py).

Every mode is a small function ``mode(ctx) -> dict`` in :data:`MODES` (registered with
:func:`mode`), run in the order given, its dict merged into the results; ``ctx`` (a
:class:`Context`) holds the run's flow and params, the output folder, the options and
what an earlier mode left for a later one. Each mode draws its randomness from its own
key, :data:`MODE_KEYS`, so a mode gives the same numbers whichever modes run with it.
The modes:

- ``bpd``: test bits/dim over several dequantisation draws (mean and standard error),
  and the importance-weighted estimate over the draws;
- ``samples``: grids at several temperatures, and one per-level temperature (App. D);
- ``progressive``: coarse-to-fine decoding (Fig. 5a);
- ``rf``: receptive-field maps of the strongest latents per level and the strength
  histograms (Fig. 5c);
- ``traverse``: the strongest latent of each level varied, PNG rows and a GIF (Fig. 6);
- ``mix``: level mixing of test images (Fig. 7);
- ``explorer``: one self-contained HTML file of the strongest latents of each level,
  their receptive fields and traversals (:mod:`rgflow_jax.explore.export`);
- ``inpaint``: 10 x 10 regions of test images: cone-constrained for RG-Flow, randomly
  constrained and unconstrained for Real NVP; PSNR table (Fig. 8);
- ``fid``: FID of samples against the test set (Tables B1, G1), with the Inception
  weights given (:mod:`rgflow_jax.paper.fid`); they also add Inception-PSNR to ``inpaint``;
- ``curve``: the run's bits/dim curve;
- ``semantic``: MSDS only: colour and orientation spreads of samples against real test
  images (:mod:`rgflow_jax.paper.semantic`).

``all`` runs every mode (``fid`` only with Inception weights, ``semantic`` only on
MSDS). Every number goes to ``<workdir>/eval/eval.json``; the images that modes draw
(samples, inpaintings) also go beside it as ``.npz``.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import data
from rgflow_jax.core import pixels
from rgflow_jax.explore import export
from rgflow_jax.io import figures, metrics, platform, storage
from rgflow_jax.io.progress import bar as progress_bar, say as progress_say
from rgflow_jax.paper import fid, inpainting, latents, receptive, semantic
from rgflow_jax.run import jit_steps, run_config, trained

# Each mode's key: fold_in(PRNGKey(config.seed + KEY_OFFSET), MODE_KEYS[mode]). Two
# runs evaluated with the same seed see the same noise, and the modes that sample the
# prior at T = 1 (samples, semantic) draw from one key.
KEY_OFFSET = 777
MODE_KEYS = {"bpd": 1, "samples": 2, "semantic": 2, "rf": 3, "progressive": 5,
             "traverse": 6, "inpaint": 8, "fid": 9}
SEMANTIC_DATA = ("msds1", "msds2")  # the data sets whose images the semantic scores read


def mode_key(config, name: str) -> jax.Array:
  """The key of evaluation mode ``name`` for a run of ``config``."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed + KEY_OFFSET), MODE_KEYS[name])


@dataclasses.dataclass
class Context:
  """What a mode reads: the run, where to write, the options, and ``shared`` (results an
  earlier mode left for a later one, e.g. the strongest latents)."""

  config: object
  workdir: object
  out_dir: object
  flow: object
  params: object
  step: int = 0  # of the checkpoint evaluated
  extractor: object = None  # fid.Extractor of config.eval.fid.weights, if given
  shared: dict = dataclasses.field(default_factory=dict)

  @property
  def dtype(self):
    return jax.tree.leaves(self.params)[0].dtype

  @property
  def options(self):
    """``config.eval``: the modes' options."""
    return self.config.eval

  @property
  def progress(self) -> bool:
    return bool(self.config.progress)

  def key(self, name: str) -> jax.Array:
    """Mode ``name``'s key (:func:`mode_key`)."""
    return mode_key(self.config, name)

  def arrays(self, name: str, **arrays):
    """Save ``arrays`` as ``<out_dir>/<name>.npz`` (what rgflow-compare reads back)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    storage.write_bytes_atomic(self.out_dir / f"{name}.npz", buf.getvalue())

  def figure(self, name: str):
    """The path to write the figure ``name`` to; it is also shown in TensorBoard."""
    self.shared.setdefault("figures", []).append(name)
    return self.out_dir / name


MODES: dict[str, Callable[[Context], dict]] = {}
# mode name -> ``describe(results) -> str``: the one line eval prints for the mode.
SUMMARIES: dict[str, Callable[[dict], str]] = {}


def mode(name: str, describe: Callable[[dict], str]):
  """Register ``fn(ctx) -> dict`` as the evaluation mode ``name``, and ``describe``,
  which turns the results into the one line the command prints for it."""
  def register(fn):
    MODES[name] = fn
    SUMMARIES[name] = describe
    return fn
  return register


def summary_lines(results: dict) -> list[str]:
  """One line per mode that ran (in the order run), then where the files are."""
  fallback = results.get("checkpoint_fallback")
  which = f"{results['checkpoint']} checkpoint" + (
      f", as the best one could not be read: {fallback}" if fallback else "")
  return [SUMMARIES[name](results) for name in results["modes"]] + [
      f"eval: step {results['step']} ({which}); every number in "
      f"{results['out_dir']}/eval.json"]


def plus_minus(stderr: float | None, draws: int) -> str:
  """``+- 0.0012 (4 draws)``, or ``+- n/a (1 draw)``: one draw has no spread (None)."""
  spread = "n/a" if stderr is None else f"{stderr:.4f}"
  return f"+- {spread} ({draws} draw{'s' if draws != 1 else ''})"


def _test_images(config, flow, n, progress):
  source = data.make_source(config.data, "test", flow.image_size, flow.channels, progress)
  return np.stack([source[i] for i in range(min(n, len(source)))])


# ---------------------------------------------------------- reusable pieces
def test_bpd(flow, params, images_source, batch_size: int, draws: int, rng,
             max_images: int | None = None, progress: bool = True):
  """Test bits/dim over ``draws`` dequantisation draws, in one pass over the set: the
  mean of the per-draw means (each an upper bound) with their standard error, and the
  tighter importance-weighted estimate over the draws (per image) with its standard
  error over images. Draw d is the same as ``draws=1`` with ``fold_in(rng, d)``."""
  mesh = jit_steps.make_mesh()
  eval_step = jit_steps.make_eval_step(flow, mesh)
  batch = jit_steps.eval_batch_size(batch_size)
  n = len(images_source) if max_images is None else min(max_images, len(images_source))
  batches = progress_bar(data.eval_batches(images_source, batch, max_images), progress,
                         total=-(-n // batch), desc=f"test bits/dim ({draws} draws)",
                         unit="batch")
  draw_rngs = jnp.stack([jax.random.fold_in(rng, d) for d in range(draws)])
  result = jit_steps.evaluate_draws(flow, params, batches, mesh, draw_rngs, eval_step)
  per_draw = np.asarray(result["per_draw"])
  # One draw has no spread: None (null in eval.json), shown as "+- n/a (1 draw)".
  stderr = float(per_draw.std(ddof=1) / np.sqrt(draws)) if draws > 1 else None
  return {"bpd": float(per_draw.mean()), "stderr": stderr, "draws": per_draw.tolist(),
          "images": result["images"], "iw_bpd": result["iw"],
          "iw_stderr": result["iw_stderr"]}


# -------------------------------------------------------------------- modes
def _describe_bpd(results: dict) -> str:
  r = results["test_bpd"]
  iw_spread = "n/a" if r["iw_stderr"] is None else f"{r['iw_stderr']:.4f}"
  return (f"test bits/dim: {r['bpd']:.4f} {plus_minus(r['stderr'], len(r['draws']))}, "
          f"importance-weighted over the draws {r['iw_bpd']:.4f} +- {iw_spread} (over "
          f"images), {r['images']} images")


@mode("bpd", _describe_bpd)
def _bpd(ctx: Context) -> dict:
  o = ctx.options.bpd
  if o.images:
    source = data.ArraySource(data.load_npz(o.images), o.images)
  else:
    source = data.make_source(ctx.config.data, "test", ctx.flow.image_size,
                              ctx.flow.channels, ctx.progress)
  data.check_source_shape(source, ctx.flow.image_size, ctx.flow.channels)
  return {"test_bpd": test_bpd(ctx.flow, ctx.params, source, ctx.config.eval.batch_size,
                               o.draws, ctx.key("bpd"), o.max_images or None, ctx.progress)}


SAMPLE_TEMPERATURES = (1.0, 0.8, 0.5, 0.0)


@mode("samples", lambda r: (
    f"samples: {', '.join(r['samples'])} and samples_mixed_T.png (per-level "
    f"temperatures {', '.join(f'{t:.2f}' for t in r['samples_mixed_temperatures'])})"))
def _samples(ctx: Context) -> dict:
  sample = jax.jit(ctx.flow.sample, static_argnums=2)
  real = figures.grid_image(_test_images(ctx.config, ctx.flow, 64, ctx.progress), 8,
                          title=f"test images ({ctx.config.data.name}), for comparison")

  def save(imgs, name, title):  # samples on the left, real test images on the right
    figures.save_side_by_side([figures.grid_image(np.asarray(imgs), 8, title=title), real],
                            ctx.figure(name))

  drawn = {}
  for t in SAMPLE_TEMPERATURES:
    drawn[f"T{t:.1f}"] = pixels.to_uint8_numpy(sample(ctx.params, ctx.key("samples"), 64, t))
    save(drawn[f"T{t:.1f}"], f"samples_T{t:.1f}.png",
         f"samples at temperature T = {t} (step {ctx.step})")
  ctx.arrays("samples", **drawn)
  # App. D: warm high levels, cooler low levels.
  mixed_t = np.linspace(0.6, 1.0, ctx.flow.num_levels).tolist()
  save(pixels.to_uint8(sample(ctx.params, ctx.key("samples"), 64, jnp.asarray(mixed_t))),
       "samples_mixed_T.png", "samples, temperature per level (0 = finest): "
       + ", ".join(f"{t:.2f}" for t in mixed_t))
  return {"samples": [f"samples_T{t:.1f}.png" for t in SAMPLE_TEMPERATURES],
          "samples_mixed_temperatures": mixed_t}


@mode("progressive", lambda r: "progressive decoding, coarse to fine: progressive.png")
def _progressive(ctx: Context) -> dict:
  flow = ctx.flow
  z = flow.sample_latents(ctx.key("progressive"), 8, ctx.config.train.samples.temperature,
                         ctx.dtype)
  images = jax.jit(lambda p, zz: latents.progressive(flow, p, zz))(ctx.params, z)
  figures.save_grid(pixels.to_uint8_numpy(images.reshape((-1,) + flow.event_shape)),
                  ctx.figure("progressive.png"), ncol=8,
                  rows=[f"levels >= {flow.num_levels - 1 - r}" for r in range(images.shape[0])],
                  title="coarse to fine: row r decodes only the latents of levels >= "
                  f"{flow.num_levels - 1} - r (finer ones at 0); 8 samples")
  return {"progressive": {"rows": "levels >= h, h from the top level down to 0"}}


@mode("rf", lambda r: (
    "receptive fields: receptive_fields.png, rf_strengths.png; median strength by level "
    + ", ".join(f"{v['median_strength']:.3g}" for v in r["rf"].values())))
def _rf(ctx: Context) -> dict:
  summary, ctx.shared["strongest"] = receptive.receptive_field_figures(
      ctx.flow, ctx.params, ctx.key("rf"), ctx.options.rf.samples, ctx.out_dir,
      progress=ctx.progress)
  for name in ("receptive_fields.png", "rf_strengths.png"):
    ctx.figure(name)
  return {"rf": summary}


@mode("traverse", lambda r: (
    f"traversals of the strongest latent per level {r['traverse']['latents']}: "
    "traverse_level*.png, traverse.gif"))
def _traverse(ctx: Context) -> dict:
  flow = ctx.flow
  z = flow.sample_latents(ctx.key("traverse"), 4, 0.8, ctx.dtype)
  values = np.linspace(-3.0, 3.0, 9)
  tops = ctx.shared.get("strongest") or receptive.strongest_latents(
      flow, ctx.params, ctx.key("rf"), ctx.options.rf.samples)
  traverse = jax.jit(lambda p, zz, lat, v: latents.traverse(flow, p, zz, lat, v))
  frames_per_level = []
  for level, latent in enumerate(tops):
    rows = np.asarray(traverse(ctx.params, z, jnp.asarray(latent), jnp.asarray(values)))
    grid = rows.transpose(1, 0, 2, 3, 4).reshape((-1,) + flow.event_shape)
    figures.save_grid(pixels.to_uint8_numpy(grid), ctx.figure(f"traverse_level{level}.png"),
                    ncol=len(values), columns=[f"{v:+g}" for v in values],
                    rows=[f"sample {k + 1}" for k in range(len(z))],
                    title=f"level {level}: latent (i, j, c) = {latent} set to "
                    f"{values[0]:g} ... {values[-1]:g} (columns); a row per sample")
    frames_per_level.append(rows)
  figures.save_gif([pixels.to_uint8_numpy(np.concatenate([f[v] for f in frames_per_level]))
                  for v in range(len(values))], ctx.figure("traverse.gif"), ncol=4,
                 titles=[f"strongest latent of each level (a row per level) = {v:+.2f}"
                         for v in values])
  return {"traverse": {"latents": tops, "values": values.tolist()}}


@mode("mix", lambda r: f"level mixing ({r['mix']['columns']}): mix.png")
def _mix(ctx: Context) -> dict:
  flow = ctx.flow
  imgs = _test_images(ctx.config, flow, 4, ctx.progress)
  y, _ = pixels.to_flow(pixels.from_uint8(imgs))
  z, _ = latents.encode_jit(flow, ctx.params, y)
  n = len(imgs) - len(imgs) % 2
  pairs = [(a, a + 1) for a in range(0, n, 2)] + [(a + 1, a) for a in range(0, n, 2)]
  zm = jnp.stack([latents.mix_levels(flow, z[a], z[b], theta)
                  for a, b in pairs for theta in range(flow.num_levels + 1)])
  panels = pixels.from_flow(latents.decode_jit(flow, ctx.params, zm)[0])
  top = flow.num_levels
  figures.save_grid(pixels.to_uint8_numpy(panels), ctx.figure("mix.png"), ncol=top + 1,
                  columns=[f"theta {t}" + (" = A" if t == 0 else " = B" if t == top else "")
                           for t in range(top + 1)],
                  rows=[f"A: {a + 1}, B: {b + 1}" for a, b in pairs],
                  title="level mixing of test images A and B: column theta takes levels "
                  f">= theta from A, the rest from B (theta = 0 .. {flow.num_levels})")
  return {"mix": {"columns": f"theta = 0 (all of A) .. {flow.num_levels} (all of B)"}}


@mode("explorer", lambda r: (
    f"explorer file: the {r['explorer']['per_level']} strongest latents of each of "
    f"{len(r['explorer']['latents'])} levels, receptive fields and traversals -> "
    "explorer.html (opens offline)"))
def _explorer(ctx: Context) -> dict:
  per_level = 3
  chosen = export.write_html(ctx.flow, ctx.params, ctx.out_dir / "explorer.html",
                             ctx.key("rf"), title=f"RG-Flow latents: {ctx.workdir} "
                             f"(step {ctx.step})", rf_samples=ctx.options.rf.samples,
                             per_level=per_level, progress=ctx.progress)
  return {"explorer": {"latents": chosen, "per_level": per_level}}


def _describe_inpaint(results: dict) -> str:
  r = results["inpaint"]
  parts = []
  for how in r["modes"]:
    where = "the cone's blocks only" if r["rows"][0][f"local_{how}"] else "the whole image"
    inception = (f", Inception-PSNR {r[f'mean_inception_psnr_{how}']:.2f} dB (corrupted "
                 f"{r['mean_inception_psnr_corrupted']:.2f})"
                 if "mean_inception_psnr_corrupted" in r else "")
    parts.append(f"inpainting (free: {how}; each step computes {where}): PSNR "
                 f"{r[f'mean_psnr_{how}']:.2f} dB (corrupted {r['mean_psnr_corrupted']:.2f})"
                 f"{inception}, {r[f'median_seconds_{how}']:.2f} s per image (median)")
  return "; ".join(parts) + " -> inpaint.png"


@mode("inpaint", _describe_inpaint)
def _inpaint(ctx: Context) -> dict:
  o = ctx.options.inpaint
  truth = _test_images(ctx.config, ctx.flow, o.images, ctx.progress)
  summary, panels = inpainting.inpaint_table(ctx.flow, ctx.params, truth, ctx.config.seed,
                                             ctx.key("inpaint"), o.starts, o.steps,
                                             ctx.progress, extractor=ctx.extractor)
  figures.save_grid(pixels.to_uint8_numpy(panels), ctx.figure("inpaint.png"),
                  ncol=len(summary["columns"]), columns=summary["columns"],
                  title="inpainting: " + " | ".join(summary["columns"]))
  ctx.arrays("inpaint", panels=pixels.to_uint8_numpy(panels),
             columns=np.asarray(summary["columns"]))
  return {"inpaint": summary}


def draw_samples(flow, params, rng, n: int, temperature: float, batch_size: int,
                 progress: bool = False) -> np.ndarray:
  """n uint8 samples at ``temperature``, in batches of one shape (one compile)."""
  sample = jax.jit(flow.sample, static_argnums=2)
  out = []
  for b in progress_bar(range(-(-n // batch_size)), progress, desc="samples", unit="batch"):
    imgs = sample(params, jax.random.fold_in(rng, b), batch_size, temperature)
    out.append(pixels.to_uint8_numpy(imgs))
  return np.concatenate(out)[:n]


def test_set_stats(config, flow, extractor, n_images: int, progress: bool = False):
  """Inception statistics of the first ``n_images`` test images (all of them if the set
  is smaller): FID's reference, the same for every model of one data set."""
  real = _test_images(config, flow, n_images, progress)
  return extractor.stats(real, progress, "Inception: test images")


def fid_score(config, flow, params, rng, extractor, real_stats, temperature: float,
              progress: bool = False) -> dict:
  """FID of as many samples at ``temperature`` as ``real_stats`` has test images."""
  fake = draw_samples(flow, params, rng, real_stats.n, temperature, config.eval.batch_size,
                      progress)
  fake_stats = extractor.stats(fake, progress, "Inception: samples")
  return {"fid": fid.fid_from_stats(fake_stats, real_stats), "images": real_stats.n,
          "temperature": temperature}


@mode("fid", lambda r: (
    f"FID: {r['fid']['fid']:.2f} ({r['fid']['images']} samples at T = "
    f"{r['fid']['temperature']:g} against {r['fid']['images']} test images; Inception "
    f"weights {r['fid']['weights']})"))
def _fid(ctx: Context) -> dict:
  o = ctx.options.fid
  real = test_set_stats(ctx.config, ctx.flow, ctx.extractor, o.images, ctx.progress)
  result = fid_score(ctx.config, ctx.flow, ctx.params, ctx.key("fid"), ctx.extractor, real,
                     o.temperature, ctx.progress)
  return {"fid": dict(result, weights=str(o.weights))}


@mode("curve", lambda r: "bits/dim against training time: bpd_curve.png")
def _curve(ctx: Context) -> dict:
  figures.plot_bpd_curve(ctx.workdir / "metrics.jsonl", ctx.figure("bpd_curve.png"),
                       run_config.reference_curves(ctx.config))
  return {"curve": "bpd_curve.png"}


def _describe_semantic(results: dict) -> str:
  c, a = results["semantic"]["colour_spread"], results["semantic"]["angle_spread"]
  return (f"semantic scores of {results['semantic_samples']} samples (median spread, "
          f"real in brackets): colour {c['median_generated']:.1f} "
          f"({c['median_real']:.1f}), orientation {a['median_generated']:.1f} deg "
          f"({a['median_real']:.1f}) -> semantic_samples.png")


@mode("semantic", _describe_semantic)
def _semantic(ctx: Context) -> dict:
  if ctx.config.data.name not in SEMANTIC_DATA:
    raise ValueError(f"mode semantic reads MSDS images, not {ctx.config.data.name!r}: "
                     "leave it out of --mode for this run")
  n = ctx.options.semantic.samples
  sample = jax.jit(ctx.flow.sample, static_argnums=2)
  imgs = pixels.to_uint8_numpy(sample(ctx.params, ctx.key("semantic"), n, 1.0))
  real = _test_images(ctx.config, ctx.flow, n, ctx.progress)
  figures.save_side_by_side([figures.grid_image(imgs[:64], 8, title="samples at T = 1"),
                           figures.grid_image(real[:64], 8, title="test images")],
                          ctx.figure("semantic_samples.png"))
  ctx.arrays("semantic_samples", samples=imgs)
  return {"semantic": semantic.compare(imgs, real), "semantic_samples": n}


# --------------------------------------------------------------------- main
def resolve_modes(config) -> tuple[str, ...]:
  """``config.eval.modes`` as mode names: ``all`` is every mode this run can take
  (``fid`` only with Inception weights, ``semantic`` only on MSDS); an unknown name, or
  fid without weights, is a one-line ValueError."""
  _check_options(config.eval)
  asked = tuple(m.strip() for m in str(config.eval.modes).split(",") if m.strip())
  weights = config.eval.fid.weights
  if "all" in asked:
    asked = tuple(m for m in MODES if (m != "fid" or weights)
                  and (m != "semantic" or config.data.name in SEMANTIC_DATA))
  unknown = sorted(set(asked) - set(MODES))
  if unknown or not asked:
    raise ValueError(f"unknown eval mode(s) {unknown or asked}; choose from "
                     f"{tuple(MODES) + ('all',)} (--mode, or config.eval.modes)")
  if "fid" in asked and not weights:
    raise ValueError("mode fid needs the Inception weights: --config.eval.fid.weights=PATH "
                     "(or download); docs/evaluation.md says how to get them")
  return asked


def _check_options(e) -> None:
  """One line for an option that cannot work, before any work."""
  for ok, key, rule in [(e.bpd.draws >= 1, "bpd.draws", ">= 1"),
                        (e.bpd.max_images >= 0, "bpd.max_images", ">= 0 (0: all)"),
                        (e.rf.samples >= 1, "rf.samples", ">= 1"),
                        (e.inpaint.images >= 1, "inpaint.images", ">= 1"),
                        (e.inpaint.starts >= 1, "inpaint.starts", ">= 1"),
                        (e.inpaint.steps >= 0, "inpaint.steps", ">= 0"),
                        (e.fid.images >= 2, "fid.images", ">= 2"),
                        (e.fid.temperature >= 0, "fid.temperature", ">= 0"),
                        (e.semantic.samples >= 1, "semantic.samples", ">= 1")]:
    if not ok:
      raise ValueError(f"config.eval.{key} must be {rule}")
  which = str(e.checkpoint)
  if which not in ("best", "latest") and not which.isdigit():
    raise ValueError(f"config.eval.checkpoint must be best, latest or a step number, "
                     f"got {which!r}")


def checkpoint_choice(config):
  """``config.eval.checkpoint`` as :func:`~rgflow_jax.run.trained.load_params` takes it:
  'best', 'latest' or a step (an int)."""
  which = str(config.eval.checkpoint)
  return int(which) if which.isdigit() else which


def evaluate(config, workdir, out_dir=None, on_mode: Callable[[str], None] | None = None
             ) -> dict:
  """Run ``config.eval.modes`` on the run in ``workdir`` (local or ``gs://``), with the
  options of ``config.eval``, every computation at full float32 matmul precision
  whatever the run trained with. Figures, ``.npz`` and ``eval.json`` go to ``out_dir``
  (default ``<workdir>/eval``, whose figures are also shown in the run's TensorBoard).
  ``on_mode(line)`` is called with each mode's summary line as the mode ends."""
  modes = resolve_modes(config)
  platform.use_compilation_cache(config.execution.compilation_cache_dir)
  with jax.default_matmul_precision(jit_steps.EVAL_PRECISION):
    workdir = storage.as_path(workdir)
    own_folder = out_dir is None
    out_dir = storage.check_writable(workdir / "eval" if own_folder else out_dir,
                                     "eval output folder")
    # The weights first: a wrong file is refused before any other work.
    weights = config.eval.fid.weights
    needs_inception = weights and {"fid", "inpaint"} & set(modes)
    extractor = fid.Extractor.from_file(weights) if needs_inception else None
    flow, params, step, used, fallback = trained.load_params(config, workdir,
                                                     checkpoint_choice(config))
    ctx = Context(config, workdir, out_dir, flow, params, step, extractor)
    results = {"step": step, "checkpoint": used, "checkpoint_fallback": fallback,
               "num_params": flow.num_params(params), "modes": list(modes),
               "out_dir": str(out_dir)}
    for i, name in enumerate(modes):
      if ctx.progress and jax.process_index() == 0:
        progress_say(f"eval {i + 1}/{len(modes)}: {name} ...")
      results.update(MODES[name](ctx))
      if on_mode is not None:
        on_mode(SUMMARIES[name](results))
  storage.write_json_atomic(out_dir / "eval.json", results)
  if own_folder and jax.process_index() == 0:
    _figures_to_tensorboard(workdir / "tensorboard", out_dir, ctx.shared.get("figures", []),
                            step)
  return results


def _figures_to_tensorboard(logdir, out_dir, names, step: int):
  """The evaluation's PNG figures in the run's TensorBoard (Images, ``eval/<name>``)."""
  names = [n for n in names if n.endswith(".png")]
  tb = metrics.TensorBoardLog.create(logdir) if names else None
  if tb is None:
    return
  try:
    for name in names:
      tb.image(f"eval/{name.removesuffix('.png')}", (out_dir / name).read_bytes(), step)
    tb.close()
  except OSError as e:  # the figures are written; only their copy in TensorBoard is lost
    progress_say(f"warning: the figures are not in TensorBoard: cannot write to {logdir} "
                 f"({storage.error_line(e)})")
