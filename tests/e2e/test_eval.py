"""rgflow-eval (eval.py) as a process: settings out of range refused before any work."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.parametrize("flag,message", [
    ("--config.eval.bpd.draws=0", "config.eval.bpd.draws must be >= 1"),
    ("--config.eval.bpd.max_images=-3", "config.eval.bpd.max_images must be >= 0 (0: all)"),
    ("--draws=0", "config.eval.bpd.draws must be >= 1"),  # the old flag, as its key
])
def test_eval_settings_out_of_range_are_refused_before_any_work(tmp_path, flag, message):
  out = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--config",
                        str(ROOT / "configs/msds1.py:smoke"), f"--workdir={tmp_path}", flag],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  assert out.stderr.strip().splitlines()[-1] == f"error: {message}", out.stderr[-2000:]
  assert "Traceback" not in out.stderr
