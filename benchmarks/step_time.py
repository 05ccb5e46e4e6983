"""Training-step benchmark: ``python benchmarks/step_time.py [--quick] [--json out.json]``.

A thin entry point for :mod:`rgflow_jax.bench` (``python -m rgflow_jax.bench`` is the
same); ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgflow_jax import bench  # noqa: E402

if __name__ == "__main__":
  from rgflow_jax import xla_cpu  # noqa: E402
  xla_cpu.tune_cpu_process()  # on CPU only: XLA flag, allocator restart, dispatch (see xla_cpu)
  bench.main()
