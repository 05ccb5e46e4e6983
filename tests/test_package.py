"""The installable package: the wheel holds every module, its dependencies are
requirements.txt's, and importing it changes nothing about the process."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements(lines) -> set[tuple]:
  out = set()
  for line in lines:
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
      r = Requirement(line)
      if r.marker is None or "extra" not in str(r.marker):
        out.add((r.name.lower().replace("_", "-"), str(r.specifier), tuple(sorted(r.extras))))
  return out


def test_wheel_holds_every_module_and_requirements_txt(tmp_path):
  src = tmp_path / "src"
  shutil.copytree(ROOT / "rgflow_jax", src / "rgflow_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--quiet", "-w", str(tmp_path / "dist"), str(src)], check=True,
                 capture_output=True, text=True)
  (wheel,) = (tmp_path / "dist").glob("rgflow_jax-*.whl")
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = z.read(meta_name).decode()
  modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rgflow_jax").rglob("*.py")}
  assert modules and modules <= names, sorted(modules - names)
  requires = [l.split(":", 1)[1] for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
  want = _requirements((ROOT / "requirements.txt").read_text().splitlines())
  assert _requirements(requires) == want
  extras = {l.split(":", 1)[1].strip() for l in metadata.splitlines()
            if l.startswith("Provides-Extra:")}
  assert {"cuda", "tpu", "gcs", "s3", "test", "prepare"} <= extras


def test_test_requirements_match_the_test_extra():
  import tomllib  # noqa: PLC0415  (Python >= 3.11, as the suite runs)
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  assert _requirements(project["dependencies"]) == \
      _requirements((ROOT / "requirements.txt").read_text().splitlines())
  assert _requirements(project["optional-dependencies"]["test"]) == \
      _requirements((ROOT / "requirements-test.txt").read_text().splitlines())


IMPORT_EVERYTHING = """
import os, pkgutil, importlib, json
before = dict(os.environ)
import rgflow_jax
names = [m.name for m in pkgutil.walk_packages(rgflow_jax.__path__, "rgflow_jax.")]
for name in names:
    importlib.import_module(name)
for name in ("configs.base", "configs.msds1", "configs.celeba"):
    importlib.import_module(name)
from jax._src import xla_bridge
changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
print(json.dumps({"modules": len(names), "changed": sorted(changed),
                  "backend": xla_bridge.backends_are_initialized()}))
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
  assert len(graph) > 30 and "rgflow_jax.coupling" in graph["rgflow_jax.model"]
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  cycle = _find_cycle(graph)
  assert cycle is None, " -> ".join(cycle)
