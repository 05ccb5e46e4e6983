"""The compile-time benchmark (benchmarks/compile_time.py): its rows on this machine's
CPU for a smoke model, its GPU target description and its batch-fit arithmetic. The
deviceless TPU and GPU compiles themselves run in `make check-accel` (a venv with
libtpu and the CUDA plugin)."""

import pytest

from benchmarks import compile_time


@pytest.mark.campaign
def test_local_rows_time_every_stage_of_each_program():
  rows = compile_time.run_config_on("local", "msds1:smoke", ["init", "train", "eval"])
  assert [r["program"] for r in rows] == ["init", "train", "eval"]
  for row in rows:
    assert row["ok"], row
    assert row["trace_s"] > 0 and row["lower_s"] > 0 and row["compile_s"] > 0, row
    assert row["equations"] > 10 and row["executable_mb"] > 0 and row["load_s"] >= 0, row
  train = rows[1]
  assert train["parameters"] == 15_744 and train["remat"] is False  # CPU: no memory plan
  assert train["command_buffers"] is False  # GPU options only on a GPU


def test_gpu_target_description_is_text_proto_with_the_chip_memory(tmp_path):
  text, memory = compile_time.gpu_target("h100")
  assert memory == 80 * 2**30
  assert "gpu_device_info {\n  threads_per_block_limit: 1024" in text
  assert "  cuda_compute_capability {\n    major: 9\n    minor: 0\n  }" in text
  assert 'platform_name: "CUDA"' in text
  lent = tmp_path / "lent.txtpb"  # a lent GPU's own description, as the check saves it
  lent.write_text("gpu_device_info {\n  device_memory_size: 150000000000\n}\n")
  assert compile_time.gpu_target(str(lent))[1] == 150_000_000_000
  lent.write_text("gpu_device_info {\n}\n")
  with pytest.raises(SystemExit, match="no device_memory_size"):
    compile_time.gpu_target(str(lent))


@pytest.mark.parametrize("plan,other,memory,want", [
    ((4, 10), (2, 6), 100, 32),  # 2 an image + 2 fixed: 49 images fit, 32 the largest 2^k
    ((4, 10), (2, 6), 66, 32),   # exactly 32
    ((4, 10), (2, 6), 65, 16),
    ((1, 4), (2, 6), 65, 16),    # the second plan at twice the batch
    ((4, 10), (2, 6), 3, 0),     # not even one image
    ((4, 10), (2, 10), 65, None),  # a flat plan says nothing of larger batches
])
def test_largest_power_of_two_batch_from_two_plans(plan, other, memory, want):
  assert compile_time.largest_pow2_batch(plan, other, memory) == want
