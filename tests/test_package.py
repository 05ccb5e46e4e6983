"""The package as a whole: its requirement files agree with pyproject, importing it
changes nothing in the process, no import cycle, each layer imports only its own or lower
ones, what the commands run is the library's, and the tests mirror the package (the
wheel: tests/e2e/test_wheel.py)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rgflow_jax
from helpers import ROOT, load_config, requirement_set


def test_test_requirements_match_the_test_extra():
  import tomllib  # noqa: PLC0415  (Python >= 3.11, as the suite runs)
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  assert requirement_set(project["dependencies"]) == \
      requirement_set((ROOT / "requirements.txt").read_text().splitlines())
  assert requirement_set(project["optional-dependencies"]["test"]) == \
      requirement_set((ROOT / "requirements-test.txt").read_text().splitlines())


def test_the_floor_run_pins_the_extras_the_suite_tests():
  """make test-fast FLOOR=1 pins the lower bounds of [explore] and [flax] too, as
  requirements-test.txt states them (the Makefile reads them from there)."""
  import tomllib  # noqa: PLC0415
  extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
      "optional-dependencies"]
  tested = {name for name, _, _ in requirement_set(extras["explore"] + extras["flax"])}
  floor = re.search(r"^FLOOR_EXTRAS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
  assert set(floor.group(1).split()) == tested == {"flask", "flax"}
  test_lines = requirement_set((ROOT / "requirements-test.txt").read_text().splitlines())
  assert {(n, s) for n, s, _ in requirement_set(extras["explore"] + extras["flax"])} <= \
      {(n, s) for n, s, _ in test_lines}


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
  imports included), from the source text; the package's public names, imported on
  first use, count as imports of the package."""
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
    if name == "rgflow_jax":
      deps |= set(rgflow_jax._EXPORTS.values())
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
LAYERS = ("core", "io", "data", "configs", "paper", "explore", "run", "nnx", "cli")


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


def _imported_by_commands_alone(graph: dict[str, set[str]]) -> list[str]:
  """The modules outside cli/ that only cli/ imports: logic a notebook could not call."""
  importers = {}
  for module, deps in graph.items():
    for dep in deps:
      importers.setdefault(dep, set()).add(module)
  cli = "rgflow_jax.cli"
  return sorted(m for m, by in importers.items()
                if not m.startswith(cli) and all(b.startswith(cli) for b in by))


def test_what_the_commands_run_the_library_exports():
  assert _imported_by_commands_alone({"rgflow_jax.cli.a": {"rgflow_jax.run.b"},
                                      "rgflow_jax.run.b": {"rgflow_jax.io.c"}}) == \
      ["rgflow_jax.run.b"]
  assert _imported_by_commands_alone(_imports_of_package()) == []
  assert rgflow_jax.get_config("msds1:smoke") == load_config("msds1", "smoke")
  from rgflow_jax.run import compare, convert, evaluation, training  # noqa: PLC0415
  assert (rgflow_jax.train_and_evaluate, rgflow_jax.evaluate, rgflow_jax.compare,
          rgflow_jax.import_run, rgflow_jax.export_run) == \
      (training.train_and_evaluate, evaluation.evaluate, compare.compare, convert.import_run,
       convert.export_run)
  with pytest.raises(ValueError, match="unknown config 'msds3': use one of celeba, "):
    rgflow_jax.get_config("msds3:cpu")


def _defines_functions(path: Path) -> bool:
  return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(ast.parse(path.read_text())))


def _test_files_of(module: Path) -> list[Path]:
  """Where a module's tests are: tests/<its folder>/test_<name>.py, or tests/e2e/ under the
  same name where all of them need real processes or runs. A package's __init__ is
  test_<package>.py in the package's folder (the root's: tests/test_package.py); the
  config files, data more than code, share tests/configs/test_configs.py."""
  rel = module.relative_to(ROOT / "rgflow_jax")
  if rel.parts[0] == "configs":
    return [ROOT / "tests" / "configs" / "test_configs.py"]
  if rel.name == "__init__.py":
    if rel.parent == Path("."):
      return [ROOT / "tests" / "test_package.py"]
    rel = rel.parent / rel.parent.name  # cli/__init__.py: tests/cli/test_cli.py
  name = f"test_{rel.stem}.py"
  return [ROOT / "tests" / rel.parent / name, ROOT / "tests" / "e2e" / name]


def test_the_tests_mirror_the_package():
  """Each module that defines a function has its test file (modules of re-exports and
  error classes alone have none); no test file lies outside the mirror."""
  modules = [p for p in sorted((ROOT / "rgflow_jax").rglob("*.py")) if _defines_functions(p)]
  assert len(modules) > 40
  assert _test_files_of(ROOT / "rgflow_jax" / "cli" / "__init__.py")[0] == \
      ROOT / "tests" / "cli" / "test_cli.py"
  missing = [f"{m.relative_to(ROOT)}: {_test_files_of(m)[0].relative_to(ROOT)}"
             for m in modules if not any(f.exists() for f in _test_files_of(m))]
  assert missing == []
  folders = {p.parent for m in modules for p in _test_files_of(m)}
  folders |= {ROOT / "tests", ROOT / "tests" / "experiments"}  # the repository's own files
  astray = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
            if p.parent not in folders and "fixtures" not in p.parts]
  assert astray == []


def test_the_e2e_marker_is_the_e2e_folder(request):
  """tests/e2e/conftest.py marks every test there, and only there; a campaign is e2e."""
  e2e = ROOT / "tests" / "e2e"
  items = request.session.items
  assert any(item.path == Path(__file__) for item in items)
  for item in items:
    inside = e2e in Path(item.path).parents
    marked = item.get_closest_marker("e2e") is not None
    assert marked == inside, item.nodeid
    assert item.get_closest_marker("campaign") is None or inside, item.nodeid
  outside = [str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py")
             if e2e not in p.parents and "pytest.mark." + "e2e" in p.read_text()]
  assert outside == []
