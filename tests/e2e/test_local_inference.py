"""The full-against-local inpainting benchmark (benchmarks/local_inference.py), --quick."""

import json

import pytest

from benchmarks import local_inference


@pytest.mark.campaign
def test_quick_benchmark_times_both_objectives_and_writes_json(tmp_path, capsys):
  out = tmp_path / "local.json"
  result = local_inference.main(["--quick", "--model", "tiny", "--json", str(out)])
  saved = json.loads(out.read_text())
  assert saved["rows"] == result["rows"] and len(saved["rows"]) == 1
  row = saved["rows"][0]
  assert row["L"] == 32 and 0 < row["cone_latents"] < row["latents"] == 32 * 32 * 3
  assert row["gradient_rel_diff"] < 1e-3  # the two objectives were checked to agree
  for key in ("full_step_s", "local_step_s", "full_score_s", "local_score_s",
              "full_step_memory_mb", "local_step_memory_mb"):
    assert row[key] > 0, key
  assert row["step_speedup"] == row["full_step_s"] / row["local_step_s"]
  assert "| 32 | 3,072 | 1,344 (43.8%) |" in capsys.readouterr().out
