"""Inpainting work against image size: the full objective against the cone's (O(log L)).

    python benchmarks/local_inference.py                  # L = 32, 64, 128, 256
    python benchmarks/local_inference.py --quick          # seconds: the suite runs this
    python benchmarks/local_inference.py --json out.json

For each image edge L (k = 4, C = 3, the step-time benchmark's small RG-Flow, or
``--model tiny``, with random weights; a 10 x 10 region at the image's centre): the latents in the region's inference cone, and for the full
objective (decode the whole latent, encode the whole pasted image: what any flow must
do) and the local one (rgflow_jax.core.local: the cone's blocks only) the seconds per Adam
step (gradient and update of a batch of ``--batch`` latents, run as inpainting runs
them: ``--loop`` steps in one compiled loop, the time divided by the steps), the
seconds to score
``--starts`` prior draws (inpainting's best-of-N), their ratios, and XLA's planned
memory for each (arguments, outputs and temporaries of the compiled step). Both
objectives are checked to agree (their gradients, float32) before they are timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgflow_jax import RGFlow  # noqa: E402
from rgflow_jax.paper import inpainting, latents

from rgflow_jax.cli import xla_cpu
from rgflow_jax.core import local, pixels

# The step-time benchmark's tiny and small RG-Flows (benchmarks/step_time.py).
MODELS = {"tiny": dict(n_layers=1, n_res=1, mlp_depth=1, hidden=32),
          "small": dict(n_layers=2, n_res=1, mlp_depth=2, hidden=128)}
REGION = 10


def _timed(fn, repeats: int) -> list[float]:
  jax.block_until_ready(fn())  # compiled and warm
  out = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - t)
  return out


def _compiled(jitted, *args):
  """(the compiled program, XLA's planned memory for it in MB), compiled once."""
  compiled = jitted.lower(*args).compile()
  m = compiled.memory_analysis()
  return compiled, (m.argument_size_in_bytes + m.output_size_in_bytes
                    + m.temp_size_in_bytes - m.alias_size_in_bytes) / 2**20


def bench_size(L: int, model: str, batch: int, starts: int, repeats: int, loop: int) -> dict:
  flow = RGFlow(image_size=L, channels=3, block_size=4, **MODELS[model])
  params = flow.init(jax.random.PRNGKey(0))
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                        params)
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(0.05, 0.95, (1, L, L, 3)), jnp.float32)
  top = left = L // 2 - REGION // 2
  region = np.zeros((L, L), bool)
  region[top:top + REGION, left:left + REGION] = True
  region3 = jnp.asarray(region[..., None])

  cone = local.Cone.for_box(flow, top, left, REGION, REGION)
  cache = local.cache_baseline(flow, params, cone, image)
  box_mask = jnp.asarray(region.reshape(-1)[cone.pixels])
  box_image = image.reshape(-1, 3)[cone.pixels]
  z_fixed = latents.encode_jit(flow, params, pixels.to_flow(image)[0])[0][0]
  cone_mask = jnp.zeros(L * L, bool).at[jnp.asarray(cone.cone_sites)].set(True, mode="drop")
  free_mask = jnp.broadcast_to(cone_mask.reshape(L, L, 1), (L, L, 3))

  def full_nll(z):
    return inpainting.neg_log_lik(flow, params, z, z_fixed, free_mask, region3, image[0])

  prepared = local.prepare(flow, params)

  def local_nll(zc):
    return inpainting.cone_neg_log_lik(flow, prepared, cone, cache, box_mask, box_image, zc)

  opt = optax.adam(1e-2)

  def adam_steps(nll, mask=None):
    def step(_, carry):
      z, state = carry
      g = jax.vmap(jax.grad(nll))(z)
      updates, state = opt.update(g if mask is None else g * mask, state)
      return optax.apply_updates(z, updates), state
    return jax.jit(lambda z, state: jax.lax.fori_loop(0, loop, step, (z, state))[0])

  z_full = flow.sample_latents(jax.random.PRNGKey(2), batch, 1.0)
  z_cone = local.cone_latents(cone, z_full)
  # The two objectives agree (up to their constant) before anything is timed.
  g_full = jax.jit(jax.grad(full_nll))(z_full[0])
  g_local = jax.jit(jax.grad(local_nll))(z_cone[0])
  g_full_cone = local.cone_latents(cone, g_full[None])[0]
  err = float(jnp.abs(g_full_cone - g_local).max() / jnp.abs(g_full_cone).max())
  if not err < 1e-3:
    raise SystemExit(f"L={L}: the local gradient differs from the full one ({err:.2e})")

  row = {"L": L, "latents": L * L * 3, "cone_latents": cone.n_latents * 3,
         "padded_cone_latents": cone.plan.n_cone * 3, "gradient_rel_diff": err}
  starts_full = flow.sample_latents(jax.random.PRNGKey(3), starts, 1.0)
  starts_cone = local.cone_latents(cone, starts_full)
  for name, nll, z, mask, pool in (("full", full_nll, z_full, free_mask, starts_full),
                                   ("local", local_nll, z_cone, None, starts_cone)):
    state = opt.init(z)
    steps, row[f"{name}_step_memory_mb"] = _compiled(adam_steps(nll, mask), z, state)
    times = _timed(lambda: steps(z, state), repeats)  # noqa: B023
    row[f"{name}_step_s"] = statistics.median(times) / loop
    row[f"{name}_step_s_min"] = min(times) / loop
    score, row[f"{name}_score_memory_mb"] = _compiled(jax.jit(jax.vmap(nll)), pool)
    row[f"{name}_score_s"] = statistics.median(_timed(lambda: score(pool), max(1, repeats // 3)))  # noqa: B023
  row["step_speedup"] = row["full_step_s"] / row["local_step_s"]
  row["score_speedup"] = row["full_score_s"] / row["local_score_s"]
  return row


def table(rows) -> str:
  head = ("| L | latents | cone latents | full s/step | local s/step (min) | speed-up | "
          "full / local step MB | full / local score s | score speed-up |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    lines.append(
        f"| {r['L']} | {r['latents']:,} | {r['cone_latents']:,} "
        f"({r['cone_latents'] / r['latents']:.1%}) | {r['full_step_s']:.5f} | "
        f"{r['local_step_s']:.5f} ({r['local_step_s_min']:.5f}) | {r['step_speedup']:.1f}x | "
        f"{r['full_step_memory_mb']:.1f} / {r['local_step_memory_mb']:.1f} | "
        f"{r['full_score_s']:.4f} / {r['local_score_s']:.4f} | {r['score_speedup']:.1f}x |")
  return "\n".join(lines)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sizes", default="32,64,128,256", help="image edges, comma-separated")
  p.add_argument("--model", default="small", choices=sorted(MODELS))
  p.add_argument("--batch", type=int, default=1, help="latents per Adam step (inpainting: 1)")
  p.add_argument("--starts", type=int, default=200, help="prior draws scored at once")
  p.add_argument("--repeats", type=int, default=10, help="timed loops per size")
  p.add_argument("--loop", type=int, default=20, help="Adam steps in one timed loop")
  p.add_argument("--json", default=None)
  p.add_argument("--quick", action="store_true", help="seconds: L = 32 only, few repeats")
  args = p.parse_args(argv)
  sizes = (32,) if args.quick else tuple(int(v) for v in args.sizes.split(","))
  starts, repeats, loop = (4, 2, 2) if args.quick else (args.starts, args.repeats, args.loop)
  if min(sizes) < REGION or min(args.batch, starts, repeats, loop) < 1:
    p.error(f"sizes must be >= {REGION}; --batch, --starts, --repeats and --loop >= 1")
  result = {"device": jax.devices()[0].device_kind, "model": args.model,
            "model_sizes": MODELS[args.model], "region": REGION,
            "batch": args.batch, "starts": starts, "loop": loop, "rows": []}
  for L in sizes:
    print(f"L = {L} ...", file=sys.stderr, flush=True)
    result["rows"].append(bench_size(L, args.model, args.batch, starts, repeats, loop))
    if args.json:
      Path(args.json).write_text(json.dumps(result, indent=1))
  print(table(result["rows"]))
  return result


if __name__ == "__main__":
  xla_cpu.tune_cpu_process()  # on CPU only: XLA flag, allocator restart, dispatch (see xla_cpu)
  main()
