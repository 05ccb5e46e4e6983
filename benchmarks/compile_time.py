"""Where compile time goes, on this machine's CPU and on accelerators it does not have.

    python benchmarks/compile_time.py                          # CPU: smoke, cpu and paper sizes
    python benchmarks/compile_time.py --configs celeba --programs train --json out.json
    python benchmarks/compile_time.py --targets tpu:v5e:1x1,tpu:v6e:2x2 \\
        --configs celeba:accel,msds1:accel --programs train,eval --check

For each config and program (``init``, ``train``: the training loop's step, ``eval``:
the test bits/dim step, ``sample``) it reports the seconds to trace, lower and compile,
the program's size as JAX sees it (equations, counted into every loop body once) and,
on the CPU, the size of the serialized executable and the seconds to load it again
(what a persistent-cache hit costs on every start).

Accelerator targets are compiled without the accelerator: ``tpu:<topology>`` needs
``libtpu`` (the version ``jax[tpu]`` pins) in the environment, ``gpu:h100`` (or
``gpu:<a GPU's target description file>``) JAX's CUDA plugin (``jax-cuda13-plugin``
and ``jax-cuda13-pjrt``), and both run with ``JAX_PLATFORMS=cpu`` (this script sets
it). Without a device XLA:GPU autotunes nothing, so a GPU compile time says little
about a real GPU's; its memory plan does count. The training step is compiled as train.py
compiles it (the batch split over every chip of the topology), with remat where its
plan would not fit the chip (:func:`rgflow_jax.run.jit_steps.compile_loop_step`). Each
row then gives XLA's memory plan per device (arguments, temporaries, output) against
the chip's memory, the largest power-of-two batch per chip that fits (from the plans
at the config's batch and half of it: memory grows linearly in the batch) and the FLOPs
XLA counts (a loop body once). ``--check`` exits 1 when a target does not compile or
the config's batch does not fit: ``make check-accel`` runs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Chip memory by TPU generation (bytes per chip).
TPU_MEMORY = {"v4": 32 * 2**30, "v5e": 16 * 2**30, "v5p": 95 * 2**30, "v6e": 32 * 2**30}
CPU_CONFIGS = ("msds1:smoke", "msds1:cpu", "msds1", "celeba")
ACCEL_TARGETS = ("tpu:v5e:1x1", "tpu:v5e:2x4", "tpu:v6e:2x2", "gpu:h100")

# One NVIDIA H100 SXM5 80 GB as XLA's GPU compiler plans for it (its
# GpuTargetConfigProto): NVIDIA's published figures for the chip (132 SMs, 80 GB HBM3
# at 3.35 TB/s, 50 MB L2, 1.98 GHz boost) and CUDA's limits for compute capability
# 9.0 (threads, shared memory, registers). What a lent GPU reports instead is saved by
# scripts/accelerator_check.sh and compiled for with gpu:<that file>.
H100 = {
    "gpu_device_info": {
        "threads_per_block_limit": 1024, "threads_per_warp": 32,
        "shared_memory_per_block": 48 * 1024, "shared_memory_per_block_optin": 227 * 1024,
        "shared_memory_per_core": 228 * 1024, "threads_per_core_limit": 2048,
        "core_count": 132, "fpus_per_core": 128,
        "block_dim_limit_x": 2**31 - 1, "block_dim_limit_y": 65535, "block_dim_limit_z": 65535,
        "thread_dim_limit_x": 1024, "thread_dim_limit_y": 1024, "thread_dim_limit_z": 64,
        "memory_bandwidth": 3_350_000_000_000, "l2_cache_size": 50 * 2**20,
        "clock_rate_ghz": 1.98, "device_memory_size": 80 * 2**30,
        "registers_per_core_limit": 65536, "registers_per_block_limit": 65536,
        "cuda_compute_capability": {"major": 9, "minor": 0},
    },
    "platform_name": "CUDA",
    "dnn_version_info": {"major": 9, "minor": 10},
    "device_description_str": "NVIDIA H100 80GB HBM3",
}


def text_proto(message: dict, indent: str = "") -> str:
  """``message`` in protobuf's text format (nested dicts are sub-messages)."""
  lines = []
  for key, value in message.items():
    if isinstance(value, dict):
      lines += [f"{indent}{key} {{", text_proto(value, indent + "  "), f"{indent}}}"]
    else:
      lines.append(f"{indent}{key}: {json.dumps(value)}")
  return "\n".join(lines)


def gpu_target(name: str) -> tuple[str, int]:
  """(target description, device memory in bytes) for ``gpu:<name>``: ``h100``, or a
  GpuTargetConfigProto text file (a lent GPU's, from scripts/accelerator_check.sh)."""
  if name == "h100":
    return text_proto(H100), H100["gpu_device_info"]["device_memory_size"]
  text = Path(name).read_text()
  memory = next((int(line.split(":")[1]) for line in text.splitlines()
                 if line.strip().startswith("device_memory_size:")), None)
  if memory is None:
    raise SystemExit(f"error: {name} has no device_memory_size: give a GPU target "
                     "description (GpuTargetConfigProto text)")
  return text, memory


def _parse():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--targets", default="local", help="local (this machine's first device: "
                 "its CPU, or the GPU or TPU it has), tpu:<topology>, gpu:h100 or "
                 "gpu:<target description file>; comma-separated")
  p.add_argument("--configs", default=None, help="config[:variant], comma-separated "
                 f"(default: {','.join(CPU_CONFIGS)} locally; celeba:accel,msds1:accel "
                 "on accelerators)")
  p.add_argument("--programs", default="init,train,eval,sample")
  p.add_argument("--batch", type=int, default=None, help="per-chip batch (default: the "
                 "config's, divided over the chips)")
  p.add_argument("--check", action="store_true", help="exit 1 if a target fails to "
                 "compile or the batch does not fit")
  p.add_argument("--json", default=None, help="also write the rows to this file")
  return p.parse_args()


def _eqns(jaxpr) -> int:
  """Equations of a jaxpr and of every jaxpr inside it (a loop body once)."""
  from jax.extend import core as jex_core  # noqa: PLC0415
  n = 0
  for eqn in jaxpr.eqns:
    n += 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(sub, jex_core.ClosedJaxpr):
          n += _eqns(sub.jaxpr)
        elif isinstance(sub, jex_core.Jaxpr):
          n += _eqns(sub)
  return n


def _timed(jitted, args, local: bool, options=None) -> tuple[dict, object]:
  t0 = time.perf_counter()
  traced = jitted.trace(*args)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  compiled = lowered.compile(compiler_options=options)
  t3 = time.perf_counter()
  row = {"trace_s": round(t1 - t0, 2), "lower_s": round(t2 - t1, 2),
         "compile_s": round(t3 - t2, 2), "equations": _eqns(traced.jaxpr.jaxpr)}
  if local:
    from jax.experimental import serialize_executable  # noqa: PLC0415
    payload, in_tree, out_tree = serialize_executable.serialize(compiled)
    t4 = time.perf_counter()
    serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    row.update(executable_mb=round(len(payload) / 2**20, 2),
               load_s=round(time.perf_counter() - t4, 2))
  return row, compiled


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  gib = lambda b: round(b / 2**30, 3)  # noqa: E731
  return {"arguments_gib": gib(m.argument_size_in_bytes), "temporaries_gib":
          gib(m.temp_size_in_bytes), "output_gib": gib(m.output_size_in_bytes),
          "aliased_gib": gib(m.alias_size_in_bytes)}


def _flops(compiled):
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None
  except Exception:  # noqa: BLE001  (not every target reports costs)
    return None


def run_config_on(target: str, config_name: str, programs, batch=None) -> list[dict]:
  """The rows of one config on one target."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: PLC0415

  from rgflow_jax.core import execution  # noqa: PLC0415
  from rgflow_jax.run import jit_steps, run_config  # noqa: PLC0415

  local = target == "local"  # a device here: its executables can be loaded and timed
  if local:
    devices, chip_memory = np.array(jax.devices()[:1]), None
  elif target.startswith("gpu:"):
    from jax.experimental import topologies  # noqa: PLC0415
    description, chip_memory = gpu_target(target.split(":", 1)[1])
    devices = np.array(topologies.get_topology_desc(
        platform="cuda", target_config=description, topology="1x1x1").devices)
  else:
    from jax.experimental import topologies  # noqa: PLC0415
    topology = target.split(":", 1)[1]
    devices = np.array(topologies.get_topology_desc(topology, platform="tpu").devices)
    chip_memory = TPU_MEMORY[topology.split(":")[0]]
  mesh = Mesh(devices.reshape(-1), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  n_chips = devices.size
  name, _, variant = config_name.partition(":")
  config = importlib.import_module(f"rgflow_jax.configs.{name}").get_config(variant)
  per_chip = batch or max(1, config.train.batch_size // n_chips)
  config.train.batch_size = per_chip * n_chips
  flow = run_config.build_model(config)
  rep, rows_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  sds = lambda x, s=rep: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)  # noqa: E731
  state = jax.eval_shape(lambda: jit_steps.init_state(flow, config, jnp.float32))
  layout = jit_steps.FlatState(state["params"])
  L, C = flow.image_size, flow.channels
  base = {"target": target, "device": str(devices.flat[0].device_kind),
          "config": config_name, "chips": n_chips,
          "batch_per_chip": per_chip, "parameters": layout.size}
  ex = execution.Execution.from_config(config.execution, training=True)
  out = []
  for program in programs:
    row = dict(base, program=program)
    try:
      if program == "init":
        timing, _ = _timed(jax.jit(lambda: jit_steps.init_state(flow, config, jnp.float32)),
                           (), local)
        row.update(timing)
      elif program == "train":
        row.update(_train_row(jit_steps, execution, flow, config, mesh, layout, state, ex,
                              per_chip, n_chips, chip_memory, local, sds, L, C))
      elif program == "eval":
        eval_batch = jit_steps.eval_batch_size(config.eval.batch_size) if local else \
            max(1, config.eval.batch_size // n_chips) * n_chips
        args = (jax.tree.map(sds, state["params"]),
                jax.ShapeDtypeStruct((eval_batch, L, L, C), jnp.uint8, sharding=rows_sharding),
                jax.ShapeDtypeStruct((eval_batch,), jnp.float32, sharding=rows_sharding),
                jax.ShapeDtypeStruct((4, 2), jnp.uint32, sharding=rep), 0)
        timing, compiled = _timed(jit_steps.make_eval_step(flow, mesh, ex), args, local)
        row.update(timing, eval_batch=eval_batch, **_memory(compiled))
      elif program == "sample":
        sample = jax.jit(lambda p, r: flow.sample(p, r, 64, 1.0, ex.for_evaluation()))
        timing, _ = _timed(sample, (jax.tree.map(sds, state["params"]),
                                    jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep)),
                           local)
        row.update(timing)
      else:
        raise ValueError(f"unknown program {program!r}")
      row["ok"] = row.get("fits", True)
    except Exception as e:  # noqa: BLE001  (a target that does not compile is a result)
      row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
    print(json.dumps(row), flush=True)
    out.append(row)
  return out


def _train_row(jit_steps, execution, flow, config, mesh, layout, state, ex, per_chip,
               n_chips, chip_memory, local, sds, L, C) -> dict:
  """The training step as train.py compiles it; on an accelerator, its fit."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

  optimizer = jit_steps.make_optimizer(config.train.optimizer, config.train.num_steps)
  flat = jax.tree.map(sds, jax.eval_shape(layout.flatten, state))
  window = jax.ShapeDtypeStruct((len(jit_steps.WINDOW),), jnp.float32,
                                sharding=NamedSharding(mesh, P()))

  def batch_of(b):
    return jax.ShapeDtypeStruct((b * n_chips, L, L, C), jnp.uint8,
                                sharding=NamedSharding(mesh, P("data")))

  # As train.py compiles it (jit_steps.compile_loop_step: remat "auto" where the plan
  # would not fit the chip; on a GPU, command buffers), every try timed.
  timings = []  # of the compiles that succeeded: the last one is the step's

  def timed_compile(step, args, options):
    timing, compiled = _timed(step, args, local, options)
    timings.append(timing)
    return compiled

  choice = execution.remat_choice(config.execution)
  compiled, used = jit_steps.compile_loop_step(
      flow, optimizer, mesh, layout, (flat, window, batch_of(per_chip)),
      config.execution.matmul_precision, ex, choice, budget=chip_memory,
      command_buffers=config.execution.gpu_command_buffers, compile_fn=timed_compile)
  timing = timings[-1]
  options = jit_steps.compiler_options(mesh, config.execution.gpu_command_buffers)
  why = "auto: the plan without it does not fit" if used.remat and choice is None else None
  row = dict(timing, remat=used.remat, remat_because=why,
             scan_min_layers=used.scan_min_layers, command_buffers=options is not None,
             flops=_flops(compiled), **_memory(compiled))
  if chip_memory:
    # The plan at a second batch (half, or twice a batch of 1) gives the memory per image.
    other = per_chip // 2 if per_chip > 1 else 2
    need = jit_steps.step_memory_bytes(compiled)
    need_other = jit_steps.step_memory_bytes(jit_steps.make_loop_step(
        flow, optimizer, mesh, layout, config.execution.matmul_precision, used).lower(
            flat, window, batch_of(other)).compile(compiler_options=options))
    row.update(chip_memory_gib=round(chip_memory / 2**30, 1),
               step_memory_gib=round(need / 2**30, 3), fits=need <= chip_memory,
               largest_pow2_batch_per_chip=largest_pow2_batch(
                   (per_chip, need), (other, need_other), chip_memory))
  return row


def largest_pow2_batch(plan: tuple[int, int], other: tuple[int, int],
                       memory: int) -> int | None:
  """An estimate of the largest power-of-two batch whose step fits ``memory`` bytes,
  from the step's plans (batch, bytes) at two batches, taking memory as linear in the
  batch (a fixed part, the parameters and optimizer state, plus a part per image).
  0: not even one image; None: the plans do not grow with the batch (with remat XLA's
  plan can stay flat), so they say nothing of larger batches."""
  (b1, m1), (b2, m2) = plan, other
  per_image = (m1 - m2) / (b1 - b2)
  if per_image <= 0:
    return None
  largest = int((memory - (m1 - per_image * b1)) // per_image)
  return 2 ** int(math.log2(largest)) if largest >= 1 else 0


def main():
  args = _parse()
  targets = args.targets.split(",")
  accelerators = any(t != "local" for t in targets)
  if accelerators:
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  else:
    from rgflow_jax.cli import xla_cpu  # noqa: PLC0415
    xla_cpu.configure()  # the XLA flag the commands use on a CPU
  configs = (args.configs or ("celeba:accel,msds1:accel" if accelerators else
                              ",".join(CPU_CONFIGS))).split(",")
  import jax  # noqa: PLC0415
  with tempfile.TemporaryDirectory() as cache:
    jax.config.update("jax_compilation_cache_dir", cache)  # empty: every compile cold
    rows = [row for target in targets for name in configs
            for row in run_config_on(target, name, args.programs.split(","), args.batch)]
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1))
  failed = [r for r in rows if not r["ok"]]
  for r in failed:
    print(f"FAILED {r['target']} {r['config']} {r['program']}: "
          f"{r.get('error') or 'does not fit in the chip memory'}", file=sys.stderr)
  if args.check and failed:
    sys.exit(1)


if __name__ == "__main__":
  main()
