"""The step-time benchmark in --quick mode, its FLOP count, and the bfloat16
matmul mode's accuracy."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturb
from rgflow_jax import RGFlow, bench, xla_cpu


@pytest.mark.parametrize("name,gflop", [("tiny", 0.80), ("small", 15.0),
                                        ("paper-msds", 1300.0), ("paper-celeba", 2390.0)])
def test_flop_count_matches_the_reference_table(name, gflop):
  flow = RGFlow(**bench.MODELS[name])
  assert 3 * bench.forward_flops(flow, 64) / 1e9 == pytest.approx(gflop, rel=0.01)


def test_quick_benchmark_writes_its_table_and_json(tmp_path, capsys):
  out = tmp_path / "bench.json"
  result = bench.main(["--quick", "--json", str(out)])
  saved = json.loads(out.read_text())
  assert saved["matmul_ceiling_gflops"] > 0 and saved["runs"][0]["model"] == "tiny"
  ceilings = saved["matmul_ceilings_gflops"]
  assert ceilings["ceiling"] == max(v for k, v in ceilings.items() if k != "ceiling")
  if xla_cpu.YNN_FLAG in saved["xla_flags"]:  # CPU with the package default
    assert ceilings["xla_defaults"] > 0  # measured without it too
  run = result["runs"][0]
  for key in ("compile_s", "step_s_median", "step_s_min", "step_s_max", "forward_s",
              "sample_s", "gflops_per_s", "fraction_of_ceiling", "peak_memory_mb"):
    assert run[key] > 0, key
  assert run["step_s_min"] <= run["step_s_median"] <= run["step_s_max"]
  assert run["params"] == 53_760 and np.isfinite(run["train_bpd_last"])
  assert "| tiny | 53,760 |" in capsys.readouterr().out


def test_bfloat16_matmuls_keep_bits_per_dim_within_0_01():
  kw = dict(image_size=32, channels=3, block_size=4, n_layers=1, n_res=1, hidden=8,
            mlp_depth=1)
  f32, bf16 = RGFlow(**kw), RGFlow(matmul_dtype="bfloat16", **kw)
  params = perturb(f32.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.2)
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
  rng = jax.random.PRNGKey(2)
  a = jax.jit(f32.bits_per_dim)(params, images, rng)
  b = jax.jit(bf16.bits_per_dim)(params, images, rng)
  assert b.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(a - b))) < 0.01
  assert float(jnp.max(jnp.abs(a - b))) > 0  # really a different computation
  with pytest.raises(ValueError, match="matmul_dtype"):
    RGFlow(matmul_dtype="float16")
