"""The step-time benchmark (benchmarks/step_time.py) in --quick mode, its FLOP count,
and its rule for ratios: only to the authors' code timed in the same run."""

import json
import stat

import numpy as np
import pytest

from benchmarks import step_time as bench
from rgflow_jax import RGFlow
from rgflow_jax.cli import xla_cpu


@pytest.mark.parametrize("name,gflop", [("tiny", 0.80), ("small", 15.0),
                                        ("paper-msds", 1300.0), ("paper-celeba", 2390.0)])
def test_flop_count_matches_the_reference_table(name, gflop):
  flow = RGFlow(**bench.MODELS[name])
  assert 3 * bench.forward_flops(flow, 64) / 1e9 == pytest.approx(gflop, rel=0.01)


@pytest.mark.campaign
def test_quick_benchmark_writes_its_table_and_json(tmp_path, capsys):
  out = tmp_path / "bench.json"
  result = bench.main(["--quick", "--json", str(out), "--profile", str(tmp_path / "prof")])
  traces = list((tmp_path / "prof" / "tiny").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0  # the timed steps' trace
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
  assert run["executed_flops_per_step"] == run["flops_per_step"]  # no remat: 3 x forward
  assert run["step_s_min"] <= run["step_s_median"] <= run["step_s_max"]
  assert run["params"] == 53_760 and np.isfinite(run["train_bpd_last"])
  out = capsys.readouterr().out
  assert "| tiny | 53,760 |" in out
  assert "not timed | - |" in out and "speedup_step_s" not in run  # no ratio made up


def test_ratios_come_from_the_authors_code_timed_in_the_run(tmp_path, capsys):
  """With --authors-code the authors' step is timed by running their timer (here a
  stand-in interpreter that answers for it) and the ratio is theirs over ours."""
  fake = tmp_path / "python-with-torch"
  theirs = {"step_s": {"median": 1.5}, "forward_s": {"median": 0.5},
            "sample_s": {"median": 0.25}, "torch": "stand-in"}
  fake.write_text("#!/bin/sh\n"
                  f"echo \"$@\" > {tmp_path}/args\n"
                  f"echo '{json.dumps(theirs)}'\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  run = bench.main(["--quick", "--authors-code", str(tmp_path / "their-code"),
                    "--authors-python", str(fake)])["runs"][0]
  args = (tmp_path / "args").read_text()
  assert "authors_step.py" in args and "--hidden 32" in args and "--batch 8" in args
  assert "--device" not in args  # on CPU; on a GPU: --device cuda --tf32 on
  assert run["authors_step_s"] == 1.5
  assert run["speedup_step_s"] == pytest.approx(1.5 / run["step_s_median"])
  assert run["speedup_sample_s"] == pytest.approx(0.25 / run["sample_s"])
  assert f"| 1.5000 | {run['speedup_step_s']:.2f}x |" in capsys.readouterr().out
