"""The shipped config files: each builds at every size and variant, loads without starting
a JAX backend, and the list of them is complete."""

import importlib
import os
import subprocess
import sys

import pytest

from helpers import ROOT, load_config
from rgflow_jax import configs
from rgflow_jax.run import run_config


@pytest.mark.parametrize("name", configs.names())
def test_every_shipped_config_builds_at_every_size(name):
  module = importlib.import_module(f"rgflow_jax.configs.{name}")
  for variant in ("", "cpu", "smoke", "smoke,gaussian,accel"):
    c = module.get_config(variant)
    assert c.data.name == {"chairs": "folder"}.get(name, name) and c.model.name == "rgflow"


def test_every_config_has_its_variants():
  for name in ("msds1", "msds2", "celeba", "cifar10", "mnist", "chairs"):
    for variant in ("", "cpu", "smoke", "smoke,realnvp", "cpu,gaussian"):
      c = load_config(name, variant)
      run_config.validate_config(c)
      flow = run_config.build_model(c)
      assert flow.image_size == 32
    with pytest.raises(ValueError, match="variant 'huge': unknown variant 'huge'"):
      load_config(name, "huge")
  paper = run_config.build_model(load_config("celeba", ""))
  assert paper.n_layers == (8, 6, 4, 2) and paper.hidden == (512,) * 4


CONFIGS = ["mnist", "msds1", "msds2", "cifar10", "celeba", "chairs"]


def test_loading_any_config_variant_starts_no_backend():
  """jax.distributed.initialize() must come before any backend: a config file that built
  a model (or an array) while loading would make every multi-process run fail."""
  code = (
      "import importlib, itertools, sys\n"
      "from jax._src import xla_bridge\n"
      "from configs import base\n"
      "mods = list(base.MODIFIERS)\n"
      "variants = [','.join(filter(None, (s, *m))) for s in ('', *base.SIZES)\n"
      "            for r in range(len(mods) + 1) for m in itertools.combinations(mods, r)]\n"
      f"for name in {CONFIGS!r}:\n"
      "  for v in variants:\n"
      "    importlib.import_module(f'configs.{name}').get_config(v)\n"
      "    assert not xla_bridge._backends, (name, v)\n"
      "print(len(variants))\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"), capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert int(out.stdout.split()[-1]) >= 24  # sizes x subsets of the modifiers


def test_configs_listed_here_are_all_the_config_files():
  files = {p.stem for p in (ROOT / "configs").glob("*.py")} - {"__init__", "base"}
  assert files == set(CONFIGS)
