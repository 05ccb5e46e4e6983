"""The installable package: the wheel holds every module and the configs, declares the
licence, its dependencies are requirements.txt's, its console scripts train and evaluate
from a fresh venv outside the clone, and importing it changes nothing about the process."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from helpers import ROOT


def _requirements(lines) -> set[tuple]:
  out = set()
  for line in lines:
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
      r = Requirement(line)
      if r.marker is None or "extra" not in str(r.marker):
        out.add((r.name.lower().replace("_", "-"), str(r.specifier), tuple(sorted(r.extras))))
  return out


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


@pytest.mark.e2e
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
  assert "License-Expression: MIT" in metadata.splitlines()
  assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
  requires = [l.split(":", 1)[1] for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
  want = _requirements((ROOT / "requirements.txt").read_text().splitlines())
  assert _requirements(requires) == want
  extras = {l.split(":", 1)[1].strip() for l in metadata.splitlines()
            if l.startswith("Provides-Extra:")}
  assert {"cuda", "cuda12", "cuda13", "tpu", "gcs", "s3", "test", "prepare"} <= extras
  assert "Requires-Dist: jax[cuda13]>=0.10.2; extra == \"cuda\"" in metadata
  for script in ("rgflow-train", "rgflow-eval", "rgflow-compare", "rgflow-convert"):
    assert f"{script} = rgflow_jax." in entry_points


@pytest.mark.campaign
@pytest.mark.e2e
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


def test_test_requirements_match_the_test_extra():
  import tomllib  # noqa: PLC0415  (Python >= 3.11, as the suite runs)
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  assert _requirements(project["dependencies"]) == \
      _requirements((ROOT / "requirements.txt").read_text().splitlines())
  assert _requirements(project["optional-dependencies"]["test"]) == \
      _requirements((ROOT / "requirements-test.txt").read_text().splitlines())


IMPORT_EVERYTHING = """
import os, pkgutil, importlib, json, sys
before = dict(os.environ)
import rgflow_jax
names = [m.name for m in pkgutil.walk_packages(rgflow_jax.__path__, "rgflow_jax.")]
for name in names:
    importlib.import_module(name)
for name in ("configs.base", "configs.msds1", "rgflow_jax.configs.celeba"):
    importlib.import_module(name)
from jax._src import xla_bridge
changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
print(json.dumps({"modules": len(names), "changed": sorted(changed),
                  "backend": xla_bridge.backends_are_initialized(),
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_importing_the_package_changes_nothing_in_the_process():
  import json  # noqa: PLC0415
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["modules"] >= 25
  assert result["changed"] == []  # no XLA_FLAGS, allocator or other variable set
  assert result["backend"] is False  # and no JAX backend started
  assert result["pyplot"] is False  # nor pyplot, which would pick a matplotlib backend


def _imports_of_package() -> dict[str, set[str]]:
  """module -> the package modules it imports, anywhere in the file (function-level
  imports included), from the source text."""
  import ast  # noqa: PLC0415

  pkg = ROOT / "rgflow_jax"
  modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in pkg.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        base = node.module
        deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names}
      elif isinstance(node, ast.Import):
        deps |= {a.name for a in node.names}
    graph[name] = {d for d in deps if d in modules and d != name
                   and not name.startswith(d + ".") and d != "rgflow_jax"}
  return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A path a -> ... -> a in ``graph``, or None (depth-first, each node finished once)."""
  done, stack = set(), []

  def visit(node):
    stack.append(node)
    for dep in sorted(graph[node]):
      if dep in stack:
        return stack[stack.index(dep):] + [dep]
      if dep not in done:
        found = visit(dep)
        if found:
          return found
    stack.pop()
    done.add(node)
    return None

  for start in sorted(graph):
    if start not in done:
      found = visit(start)
      if found:
        return found
  return None


def test_no_module_imports_a_module_that_imports_it_back():
  graph = _imports_of_package()
  assert len(graph) > 30 and "rgflow_jax.core.coupling" in graph["rgflow_jax.core.rgflow"]
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  cycle = _find_cycle(graph)
  assert cycle is None, " -> ".join(cycle)


# The package's layers, lowest first (rgflow_jax/__init__.py says what each holds).
LAYERS = ("core", "io", "data", "configs", "paper", "run", "cli")


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
  """'a -> b' for each import of a module from a higher layer than the importer's."""
  def rank(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None

  bad = []
  for module, deps in sorted(graph.items()):
    for dep in sorted(deps):
      if rank(module) is not None and rank(dep) is not None and rank(dep) > rank(module):
        bad.append(f"{module} -> {dep}")
  return bad


def test_a_module_imports_only_its_own_layer_or_lower_ones():
  graph = _imports_of_package()
  top = {m.split(".")[1] for m in graph if m.count(".") >= 1}
  assert top == set(LAYERS), top  # every module is in a layer
  assert _layer_violations({"rgflow_jax.core.a": {"rgflow_jax.run.b", "rgflow_jax.core.c"},
                            "rgflow_jax.run.b": {"rgflow_jax.io.d"}}) == \
      ["rgflow_jax.core.a -> rgflow_jax.run.b"]
  assert _layer_violations(graph) == []


def test_every_error_the_package_defines_is_an_rgflow_error():
  """One base the commands catch (rgflow_jax.RGFlowError), each class keeping the
  built-in one a caller expects beside it."""
  import importlib  # noqa: PLC0415
  import inspect  # noqa: PLC0415
  import pkgutil  # noqa: PLC0415

  import rgflow_jax  # noqa: PLC0415
  errors = {}
  for info in pkgutil.walk_packages(rgflow_jax.__path__, "rgflow_jax."):
    module = importlib.import_module(info.name)
    for name, obj in vars(module).items():
      if (inspect.isclass(obj) and issubclass(obj, BaseException)
          and obj.__module__ == info.name):
        errors[f"{info.name}.{name}"] = obj
  assert len(errors) >= 15, sorted(errors)  # the base and every error the package raises
  assert [n for n, e in errors.items() if not issubclass(e, rgflow_jax.RGFlowError)] == []
  assert issubclass(rgflow_jax.RGFlowError, Exception)
  from rgflow_jax.data import DataError  # noqa: PLC0415
  from rgflow_jax.io import storage  # noqa: PLC0415
  assert issubclass(DataError, ValueError) and issubclass(storage.StorageError, OSError)
