"""The wheel: what it holds, and that it trains and evaluates in a fresh venv outside the
clone."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT, requirement_set


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel built from a copy of the package's files (as pip builds it from a clone)."""
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  shutil.copytree(ROOT / "rgflow_jax", src / "rgflow_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(ROOT / name, src / name)
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--quiet", "-w", str(tmp / "dist"), str(src)], check=True,
                 capture_output=True, text=True)
  (path,) = (tmp / "dist").glob("rgflow_jax-*.whl")
  return path


def test_wheel_holds_every_module_configs_licence_and_requirements_txt(wheel):
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = z.read(meta_name).decode()
    (entry_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    entry_points = z.read(entry_name).decode()
  modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rgflow_jax").rglob("*.py")}
  assert modules and modules <= names, sorted(modules - names)
  assert "rgflow_jax/configs/msds1.py" in names and "rgflow_jax/cli/train.py" in names
  # the explorer's page, script and style: served from the installed package
  assert {f"rgflow_jax/explore/static/{n}" for n in ("explorer.html", "explorer.js",
                                                      "explorer.css")} <= names
  assert "License-Expression: MIT" in metadata.splitlines()
  assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
  requires = [l.split(":", 1)[1] for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
  want = requirement_set((ROOT / "requirements.txt").read_text().splitlines())
  assert requirement_set(requires) == want
  extras = {l.split(":", 1)[1].strip() for l in metadata.splitlines()
            if l.startswith("Provides-Extra:")}
  assert {"cuda", "cuda12", "cuda13", "tpu", "gcs", "s3", "test", "prepare",
          "explore"} <= extras
  assert "Requires-Dist: jax[cuda13]>=0.10.2; extra == \"cuda\"" in metadata
  for script in ("rgflow-train", "rgflow-eval", "rgflow-compare", "rgflow-convert",
                 "rgflow-explore"):
    assert f"{script} = rgflow_jax." in entry_points


@pytest.mark.campaign
def test_the_wheel_in_a_fresh_venv_trains_and_evaluates_outside_the_clone(wheel, tmp_path):
  """pip install of the wheel into a new venv (its dependencies lent from this one through
  a .pth file: no network), then the console scripts from a folder with no clone in it."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  vpy = venv / "bin" / "python"
  site = subprocess.run([str(vpy), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  import sysconfig  # noqa: PLC0415
  Path(site, "lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  subprocess.run([str(vpy), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                  str(wheel)], check=True, capture_output=True, text=True)
  work = tmp_path / "elsewhere"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  where = subprocess.run([str(vpy), "-c", "import rgflow_jax; print(rgflow_jax.__file__)"],
                         cwd=work, env=env, capture_output=True, text=True, check=True)
  assert where.stdout.strip().startswith(site)  # the installed copy, not the clone

  def run(script, *args):
    out = subprocess.run([str(venv / "bin" / script), *args], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out

  train = run("rgflow-train", "--config", "msds1:smoke", "--workdir", "run")
  assert train.stdout.strip().splitlines()[-1].startswith("done: step 6 (6 this run)")
  assert "compiling the training step" in train.stderr
  evaluation = run("rgflow-eval", "--config", "msds1:smoke", "--workdir", "run", "--mode",
                   "bpd", "--config.eval.bpd.draws=1")
  lines = evaluation.stdout.strip().splitlines()
  assert lines[0].startswith("test bits/dim: ") and "+- n/a (1 draw), " in lines[0]
  assert lines[0].endswith(" (over images), 32 images")
  assert (work / "run" / "eval" / "eval.json").is_file() and (work / "data" / "msds1").is_dir()
