"""Training-step benchmark, beside the authors' PyTorch code when it is given.

    python benchmarks/step_time.py                 # tiny, small, paper-msds, paper-celeba
    python benchmarks/step_time.py --configs tiny,small --steps 20 --json out.json
    python benchmarks/step_time.py --quick         # seconds: the suite runs this
    python benchmarks/step_time.py --configs tiny,small \
        --authors-code ~/RG-Flow --authors-python ~/venv-torch/bin/python

For each model: parameters, model FLOPs per training step, compile time, seconds per
step (median, min, max over ``--steps`` steps after one warm-up step), images/s,
achieved GFLOP/s and its share of this machine's float32 matmul ceiling (the best of
a large ``jnp.dot`` timed in the same run and one with XLA's default flags), the same
for a no-grad ``log_prob`` batch and for ``sample``, peak memory (of the process so
far) and XLA's planned memory for the step. ``--remat auto`` recomputes each RNVP layer
only where the step would not fit.

A ratio to the authors' code is reported only when their code was timed in the same
run, on the same machine (``--authors-code``: their folder, run unchanged by
benchmarks/authors_step.py in ``--authors-python``, an interpreter with torch); timings
from another machine or session are not a baseline. Without it the table gives
absolute figures and fractions of the matmul ceiling measured in the run.

FLOPs are counted from the architecture, not measured: every linear layer of every
s and t network applied to every block, 2 * fan_in * fan_out per application (the
elementwise work is left out); a training step is 3 x the forward pass, with remat 4 x
(the forward pass run again: ``executed_flops_per_step``). XLA's own count of the
compiled step is printed beside it. On an accelerator the bfloat16 matmul peak is
measured too, and ``fraction_of_bfloat16_peak`` is the executed work's share of it.
With ``--authors-code`` on a GPU their model runs on the same GPU (TF32 on, like our
float32 default there).

``--profile DIR`` writes a jax.profiler trace of each model's timed steps to
DIR/<model>; the model's operations carry the scope ``level<h>/<layer>`` (layer =
dis or dec), so the trace groups the kernels by level and layer.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgflow_jax.cli import xla_cpu  # noqa: E402
from rgflow_jax.core.execution import Execution  # noqa: E402
from rgflow_jax.core.rgflow import RGFlow  # noqa: E402

AUTHORS_STEP = Path(__file__).resolve().parent / "authors_step.py"
MODELS = {
    "tiny": dict(n_layers=1, n_res=1, mlp_depth=1, hidden=32),
    "small": dict(n_layers=2, n_res=1, mlp_depth=2, hidden=128),
    "paper-msds": dict(n_layers=4, n_res=4, mlp_depth=2, hidden=512),
    "paper-celeba": dict(n_layers=(8, 6, 4, 2), n_res=4, mlp_depth=2, hidden=512),
}


def forward_flops(flow: RGFlow, batch: int) -> int:
  """Matmul FLOPs of one encode of ``batch`` images, counted from the architecture."""
  geo, dim = flow.geometry, flow.geometry.patch_dim
  total = 0
  for h, (n_layer, n_res, hidden, depth) in enumerate(flow.level_specs()):
    widths = (dim,) + (hidden,) * depth + (dim,)
    per_net = n_res * sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    blocks = geo.blocks_per_side(h) ** 2
    # 2 layers (disentangler, decimator) x n_layer RNVP layers x 2 half-couplings x
    # 2 networks (s, t), on every block.
    total += 2 * blocks * n_layer * 2 * 2 * per_net
  return total * batch


def matmul_ceiling(n: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
  """Best GFLOP/s of an n x n x n ``jnp.dot`` of ``dtype`` on the default device (float32
  at the platform's default precision: TF32 on recent NVIDIA GPUs)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best = min(_timed(lambda: dot(a, a).block_until_ready()) for _ in range(repeats))
  return 2 * n ** 3 / best / 1e9


def best_matmul_ceiling(n: int = 2048) -> dict:
  """The ceiling with this process's XLA flags and, on CPU, also with XLA's own
  defaults (YNNPACK dots, which the package turns off for its small products but which
  run a large square product faster): the higher one is the ceiling, so turning the
  library off can never flatter the fractions."""
  out = {"this_process": matmul_ceiling(n)}
  if jax.default_backend() == "cpu" and xla_cpu.YNN_FLAG in os.environ.get("XLA_FLAGS", ""):
    env = dict(os.environ, RGFLOW_CPU_TUNING="0")
    env["XLA_FLAGS"] = " ".join(f for f in env["XLA_FLAGS"].split()
                                if not f.startswith(xla_cpu.YNN_FLAG))
    try:
      res = subprocess.run([sys.executable, __file__, "--ceiling_only", "--matmul_n", str(n)],
                           env=env, capture_output=True,
                           text=True, timeout=300, check=True)
      out["xla_defaults"] = float(res.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
      print(f"(ceiling with XLA's default flags not measured: {e})", file=sys.stderr)
  out["ceiling"] = max(out.values())
  if jax.default_backend() != "cpu":  # the accelerator's other peak, beside (not in) it
    out["bfloat16"] = matmul_ceiling(n, dtype=jnp.bfloat16)
  return out


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def _peak_memory_mb() -> float:
  """Peak memory of this process so far: the device's peak on GPU / TPU, the peak
  resident set on CPU. It never goes down, so run models smallest first (the default
  order) and read each row as "at most this much up to this model"."""
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:  # GPU / TPU
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # CPU: process RSS


def memory_budget_bytes() -> int:
  """Memory one step may use: the accelerator's limit, or on CPU the machine's RAM."""
  from rgflow_jax.run import jit_steps  # noqa: PLC0415 (keeps --help fast)
  return (jit_steps.device_memory_bytes()
          or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def bench_model(name: str, batch: int = 64, steps: int = 10, remat: bool | None = None,
                matmul_dtype: str = "float32", scan_min_layers: int | None = None,
                profile: str | None = None, command_buffers: bool = True) -> dict:
  """One model's row. ``remat=None`` decides from memory: off, unless XLA's plan for
  the step needs more than 60 % of :func:`memory_budget_bytes` (then each RNVP layer
  is recomputed in the backward pass and the step is compiled again). ``profile``: a
  folder for a jax.profiler trace of the timed steps. ``command_buffers``: on a GPU,
  the step compiled with XLA's command buffers for loops too, as train.py compiles it
  (:data:`rgflow_jax.run.jit_steps.GPU_COMMAND_BUFFERS`), or with XLA's defaults."""
  from rgflow_jax.run import jit_steps  # noqa: PLC0415 (keeps --help fast)

  scan = {} if scan_min_layers is None else {"scan_min_layers": scan_min_layers}
  flow = RGFlow(image_size=32, channels=3, block_size=4, **MODELS[name])
  config = _optimizer_config()
  mesh = jit_steps.make_mesh()
  images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3)).astype(np.uint8)
  batch_arr = jit_steps.global_batch(images, mesh)

  def build(use_remat):
    ex = Execution(remat=use_remat, matmul_dtype=matmul_dtype, hand_backward=True, **scan)
    state = jit_steps.init_state(flow, config, jnp.float32)
    optimizer = jit_steps.make_optimizer(config.train.optimizer, 1)
    step = jit_steps.make_train_step(flow, optimizer, mesh, ex=ex)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch_arr).compile(  # timed once, then called directly
        compiler_options=jit_steps.compiler_options(mesh, command_buffers))
    return ex, state, compiled, time.perf_counter() - t0

  ex, state, compiled, compile_s = build(bool(remat))
  planned = jit_steps.step_memory_bytes(compiled)
  if remat is None and planned > 0.6 * memory_budget_bytes():
    print(f"  {name}: the step plans {planned / 2**30:.1f} GiB of "
          f"{memory_budget_bytes() / 2**30:.1f} GiB; rematerialising", file=sys.stderr)
    del state, compiled
    ex, state, compiled, compile_s = build(True)
    planned = jit_steps.step_memory_bytes(compiled)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops = float((cost or {}).get("flops", float("nan")))
  state, m = compiled(state, batch_arr)  # warm-up
  jax.block_until_ready(m)
  times = []
  with jax.profiler.trace(profile) if profile else contextlib.nullcontext():
    for _ in range(steps):
      t = time.perf_counter()
      state, m = compiled(state, batch_arr)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
  params = state["params"]

  ev = ex.for_evaluation()
  log_prob = jax.jit(lambda p, x: flow.bits_per_dim(p, x, jax.random.PRNGKey(0), ev))
  jax.block_until_ready(log_prob(params, images))
  fwd = [_timed(lambda: jax.block_until_ready(log_prob(params, images))) for _ in range(3)]
  sample = jax.jit(lambda p, r, n: flow.sample(p, r, n, execution=ev), static_argnums=2)
  jax.block_until_ready(sample(params, jax.random.PRNGKey(0), batch))
  smp = [_timed(lambda: jax.block_until_ready(sample(params, jax.random.PRNGKey(1), batch)))
         for _ in range(3)]

  flops = 3 * forward_flops(flow, batch)
  executed = (4 if ex.remat else 3) * forward_flops(flow, batch)  # remat: forward again
  median = float(np.median(times))
  out = {"model": name, "batch": batch, "params": flow.count_params(),
         "flops_per_step": flops, "executed_flops_per_step": executed,
         "executed_gflops_per_s": executed / median / 1e9,
         "xla_flops_per_step": xla_flops,
         "compile_s": compile_s, "step_s_median": median, "step_s_min": float(min(times)),
         "step_s_max": float(max(times)), "steps_timed": steps,
         "images_per_s": batch / median, "gflops_per_s": flops / median / 1e9,
         "forward_s": float(np.median(fwd)), "sample_s": float(np.median(smp)),
         "forward_gflops_per_s": flops / 3 / float(np.median(fwd)) / 1e9,
         "peak_memory_mb": _peak_memory_mb(), "planned_step_memory_mb": planned / 2**20,
         "remat": ex.remat, "matmul_dtype": matmul_dtype,
         "scan_min_layers": ex.scan_min_layers,
         "command_buffers": jit_steps.compiler_options(mesh, command_buffers) is not None,
         "train_bpd_last": float(m["train_bpd"])}
  return out


def time_authors(name: str, batch: int, steps: int, code_dir: str, python: str) -> dict:
  """The authors' step, forward and sampling at this size, timed now by
  benchmarks/authors_step.py in ``python`` (which needs torch)."""
  sizes = {k: v if isinstance(v, (tuple, list)) else (v,) for k, v in MODELS[name].items()}
  cmd = [python, str(AUTHORS_STEP), "--authors-code", code_dir, "--batch", str(batch),
         "--steps", str(steps)]
  if jax.default_backend() == "gpu":  # theirs on the same GPU, TF32 as our float32 default
    cmd += ["--device", "cuda", "--tf32", "on"]
  for key, values in sizes.items():
    cmd += [f"--{key}", ",".join(map(str, values))]
  res = subprocess.run(cmd, capture_output=True, text=True)
  if res.returncode:
    tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise SystemExit(f"error: timing the authors' code failed: {tail}")
  return json.loads(res.stdout.strip().splitlines()[-1])


def add_authors(row: dict, theirs: dict):
  """Their medians and our speed-up over them, both timed in this run."""
  for key, ours in (("step_s", "step_s_median"), ("forward_s", "forward_s"),
                    ("sample_s", "sample_s")):
    row[f"authors_{key}"] = theirs[key]["median"]
    row[f"speedup_{key}"] = theirs[key]["median"] / row[ours]
  row["authors_torch"] = theirs["torch"]


def _optimizer_config():
  import ml_collections  # noqa: PLC0415
  from rgflow_jax.configs import base  # noqa: PLC0415
  c = ml_collections.ConfigDict(dict(seed=0, train=base.base_config().train.to_dict()))
  c.train.num_steps = 1
  return c


def table(rows: list[dict], ceiling: float, header: bool = True) -> str:
  head = ("| model | params | GFLOP/step | compile s | s/step median (min-max) | img/s | "
          "GFLOP/s | of ceiling | forward s | sample s | peak MB | authors' s/step | "
          "speed-up |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)] if header else []
  for r in rows:
    lines.append(
        f"| {r['model']} | {r['params']:,} | {r['flops_per_step'] / 1e9:.2f} | "
        f"{r['compile_s']:.1f} | {r['step_s_median']:.4f} ({r['step_s_min']:.4f}-"
        f"{r['step_s_max']:.4f}) | {r['images_per_s']:.0f} | {r['gflops_per_s']:.1f} | "
        f"{r['gflops_per_s'] / ceiling:.0%} | {r['forward_s']:.4f} | {r['sample_s']:.4f} | "
        f"{r['peak_memory_mb']:.0f} | "
        + (f"{r['authors_step_s']:.4f} | {r['speedup_step_s']:.2f}x |"
           if "authors_step_s" in r else "not timed | - |"))
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--configs", default="tiny,small,paper-msds,paper-celeba",
                      help=f"comma-separated, from {sorted(MODELS)}")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=10, help="timed steps (>= 1)")
  parser.add_argument("--remat", default="auto", choices=["auto", "on", "off"],
                      help="rematerialise each RNVP layer (auto: only if memory needs it)")
  parser.add_argument("--matmul_dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--scan_min_layers", type=int, default=None,
                      help="scan blocks with at least this many layers (default: the model's)")
  parser.add_argument("--command_buffers", default="on", choices=["on", "off"],
                      help="on a GPU: the step as one CUDA graph, loops included (as "
                      "train.py compiles it), or XLA's default command buffers")
  parser.add_argument("--matmul_n", type=int, default=2048, help="size of the ceiling matmul")
  parser.add_argument("--json", default=None, help="write the results here too")
  parser.add_argument("--quick", action="store_true",
                      help="seconds: tiny only, batch 8, 2 steps, a 256 matmul")
  parser.add_argument("--authors-code", default=None,
                      help="the authors' code folder (their main.py): time it too, in this "
                      "run, and report the ratio")
  parser.add_argument("--authors-python", default=sys.executable,
                      help="the Python with torch that runs their code (default: this one)")
  parser.add_argument("--profile", default=None, metavar="DIR",
                      help="write a jax.profiler trace of each model's timed steps to "
                      "DIR/<model> (kernels grouped by level and layer)")
  parser.add_argument("--ceiling_only", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.ceiling_only:  # the ceiling under other XLA flags (best_matmul_ceiling)
    print(matmul_ceiling(args.matmul_n))
    return None
  names = ["tiny"] if args.quick else [n.strip() for n in args.configs.split(",") if n.strip()]
  unknown = [n for n in names if n not in MODELS]
  if unknown or args.steps < 1 or args.batch < 1:
    parser.error(f"unknown config(s) {unknown}; choose from {sorted(MODELS)}"
                 if unknown else "--steps and --batch must be >= 1")
  batch, steps, n = (8, 2, 256) if args.quick else (args.batch, args.steps, args.matmul_n)
  ceilings = best_matmul_ceiling(n)
  ceiling = ceilings["ceiling"]
  bf16_peak = ceilings.get("bfloat16")
  print(f"{jax.devices()[0].device_kind}: float32 matmul ceiling {ceiling:.1f} GFLOP/s "
        f"({n}^3 jnp.dot, the best of "
        + ", ".join(f"{k} {v:.1f}" for k, v in ceilings.items() if k != "ceiling") + ")",
        file=sys.stderr)
  if args.profile:
    print(f"profiling the timed steps to {args.profile}/<model> (TensorBoard's profile "
          "tab, or Perfetto)", file=sys.stderr)
  remat = {"auto": None, "on": True, "off": False}[args.remat]
  result = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
            "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "matmul_ceiling_gflops": ceiling, "matmul_ceilings_gflops": ceilings,
            "matmul_n": n, "runs": []}
  rows = result["runs"]
  for name in names:
    print(f"benchmarking {name} ...", file=sys.stderr)
    profile = os.path.join(args.profile, name) if args.profile else None
    rows.append(bench_model(name, batch, steps, remat, args.matmul_dtype,
                            args.scan_min_layers, profile, args.command_buffers == "on"))
    rows[-1]["fraction_of_ceiling"] = rows[-1]["gflops_per_s"] / ceiling
    if bf16_peak:
      rows[-1]["fraction_of_bfloat16_peak"] = rows[-1]["executed_gflops_per_s"] / bf16_peak
    if args.authors_code:
      print(f"timing the authors' code at {name} ...", file=sys.stderr)
      add_authors(rows[-1], time_authors(name, batch, steps, args.authors_code,
                                         args.authors_python))
    print(table(rows[-1:], ceiling, header=len(rows) == 1), flush=True)  # row by row
    if args.json:  # rewritten after every model: a crash keeps the finished rows
      with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    # jemalloc keeps a model's freed step memory for reuse; the next, larger model
    # would add its own on top (paper-msds kept 13 GiB, and paper-celeba after it was
    # OOM-killed on a 24 GiB machine). Hand it back between models.
    gc.collect()
    xla_cpu.release_freed_memory()
  return result


if __name__ == "__main__":
  xla_cpu.tune_cpu_process()  # on CPU only: XLA flag, allocator restart, dispatch (see xla_cpu)
  main()
