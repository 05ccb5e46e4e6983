"""rgflow-train (train.py) as a process: missing data, command-line faults and a second
trainer on one folder, each in one line."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT


def test_train_script_reports_missing_data_in_one_line(tmp_path):
  out = subprocess.run(
      [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/celeba.py:smoke"),
       f"--workdir={tmp_path / 'run'}", f"--config.data.location.data_dir={tmp_path}"],
      capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: celeba is not prepared") and "Traceback" not in out.stderr
  assert 'pip install "rgflow-jax[prepare]"' in last and "mmlab.ie.cuhk.edu.hk" in last
  assert "WARNING" not in out.stderr  # no tfds warning about a folder that is not there
  assert not (tmp_path / "run").exists()  # the failed start left no run folder


@pytest.mark.parametrize("args,message", [
    (["--config", "configs/nope.py"], "error: cannot load --config configs/nope.py: [Errno 2]"),
    (["--config", "configs/msds1.py:bogus"], "error: bad command line: variant 'bogus': "
                                             "unknown variant 'bogus'; give at most one size"),
    (["--config", "configs/msds1.py:smoke", "--config.no_such_key=1"],
     "error: bad command line: no config key 'no_such_key'"),
    (["--config", "msds1:smoke", "--config.train.batchsize=3"],
     "error: bad command line: no config key 'batchsize'; Did you mean \"batch_size\""),
    (["--config", "msds3:smoke"], "error: bad command line: unknown config 'msds3': use one "
                                  "of celeba, chairs, cifar10, mnist, msds1, msds2"),
    (["--config", "configs/msds1.py:smoke", "--config.train.batch_size=abc"],
     "error: bad command line: flag --config.train.batch_size=abc"),
    (["--config", "configs/msds1.py:smoke", "--workdir=WORKDIR_IS_A_FILE"],
     "error: cannot write to the workdir"),
])
def test_train_script_command_line_faults_are_one_line(tmp_path, args, message):
  (tmp_path / "file").write_text("x")
  args = [a.replace("WORKDIR_IS_A_FILE", str(tmp_path / "file")) for a in args]
  out = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), out.stderr[-2000:]


def test_a_second_trainer_on_one_workdir_is_refused_naming_the_holder(tmp_path):
  from rgflow_jax.io import runlock  # noqa: PLC0415
  workdir = tmp_path / "run"
  workdir.mkdir()
  cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/msds1.py:smoke"),
         f"--workdir={workdir}", f"--config.data.location.data_dir={tmp_path / 'data'}"]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  with runlock.RunLock(workdir):  # this process is the trainer now
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
  assert out.returncode != 0
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {workdir} is being trained by pid "
                                                 f"{os.getpid()} on "), out.stderr[-2000:]
  assert not (workdir / "metrics.jsonl").exists()  # the refused trainer wrote nothing
  probe = ("import sys; from rgflow_jax.io import runlock\n"
           f"with runlock.RunLock({str(workdir)!r}): print('locked')")
  assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                        check=True).stdout.strip() == "locked"  # released on exit
