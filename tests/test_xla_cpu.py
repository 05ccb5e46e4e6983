"""CPU runtime defaults: the XLA flag and the huge-pages restart."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from rgflow_jax import xla_cpu


def test_xla_cpu_defaults_respect_the_user():
  env = {}
  assert xla_cpu.configure(env, "0.10.2", backends_started=False)
  assert env["XLA_FLAGS"] == f"{xla_cpu.YNN_FLAG}="
  env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
  assert xla_cpu.configure(env, "0.10.2", backends_started=False)
  assert env["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=0",
                                      f"{xla_cpu.YNN_FLAG}="]
  for env, version, started in [({"XLA_FLAGS": f"{xla_cpu.YNN_FLAG}=dot"}, "0.10.2", False),
                                ({"RGFLOW_XLA_DEFAULTS": "0"}, "0.10.2", False),
                                ({}, "0.11.0", False), ({}, "0.10.2", True)]:
    before = dict(env)
    assert not xla_cpu.configure(env, version, backends_started=started)
    assert env == before


def test_xla_cpu_default_reaches_the_compiler():
  if f"{xla_cpu.YNN_FLAG}=" not in os.environ.get("XLA_FLAGS", "").split():
    pytest.skip("the default was not applied in this process (user flags or jaxlib)")
  a = jnp.ones((64, 64))
  hlo = jax.jit(jnp.dot).lower(a, a).compile().as_text()
  assert "__ynn_fusion" not in hlo


def test_huge_pages_restart_only_when_useful():
  env = xla_cpu.huge_pages_env({"PATH": "/bin"}, "linux", "madvise")
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and env["PATH"] == "/bin"
  env = xla_cpu.huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "linux",
                               "always")
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  for environ, platform, mode in [({}, "darwin", "madvise"), ({}, "linux", "never"),
                                  ({}, "linux", ""), ({"RGFLOW_XLA_DEFAULTS": "0"}, "linux",
                                                      "madvise"),
                                  ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "linux",
                                   "madvise")]:
    assert xla_cpu.huge_pages_env(environ, platform, mode) is None


def test_use_huge_pages_restarts_once_with_the_same_command():
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  code = ("import os, sys; sys.argv = ['x']; from rgflow_jax import xla_cpu; "
          "print('TUNABLES', os.environ.get('GLIBC_TUNABLES')); xla_cpu.use_huge_pages()")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
  lines = [l for l in out.stdout.splitlines() if l.startswith("TUNABLES")]
  if xla_cpu.huge_pages_env(env) is None:
    assert lines == ["TUNABLES None"]
  else:  # printed before the restart, then again by the restarted process
    assert lines == ["TUNABLES None", "TUNABLES glibc.malloc.hugetlb=1"], out.stderr
