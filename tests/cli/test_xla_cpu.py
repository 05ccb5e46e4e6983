"""CPU runtime defaults: the XLA flag and the allocator restart."""

import os
import subprocess
import sys

import jax

from helpers import ROOT
from rgflow_jax.cli import xla_cpu


def test_xla_cpu_defaults_respect_the_user():
  env = {}
  assert xla_cpu.configure(env, "0.10.2", backends_started=False)
  assert env["XLA_FLAGS"] == f"{xla_cpu.YNN_FLAG}="
  env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
  assert xla_cpu.configure(env, "0.10.2", backends_started=False)
  assert env["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=0",
                                      f"{xla_cpu.YNN_FLAG}="]
  for env, version, started in [({"XLA_FLAGS": f"{xla_cpu.YNN_FLAG}=dot"}, "0.10.2", False),
                                ({"RGFLOW_CPU_TUNING": "0"}, "0.10.2", False),
                                ({}, "0.9.0", False), ({}, "0.13.0", False),
                                ({}, "0.10.2", True)]:
    before = dict(env)
    assert not xla_cpu.configure(env, version, backends_started=started)
    assert env == before


def test_xla_cpu_flag_reaches_the_compiler():
  code = ("from rgflow_jax.cli import xla_cpu; import os; print(xla_cpu.configure()); "
          "import jax, jax.numpy as jnp; a = jnp.ones((64, 64)); "
          "print('__ynn_fusion' in jax.jit(jnp.dot).lower(a, a).compile().as_text())")
  root = str(ROOT)
  env = {k: v for k, v in os.environ.items() if k not in ("RGFLOW_CPU_TUNING", "XLA_FLAGS")}
  results = {}
  for tuning in ("1", "0"):
    out = subprocess.run([sys.executable, "-c", code], env={**env, "RGFLOW_CPU_TUNING": tuning},
                         cwd=root, capture_output=True, text=True, check=True)
    results[tuning] = out.stdout.split()
  assert results["0"] == ["False", "True"]  # XLA's default: YNNPACK fusions
  if jax.__version__.startswith(xla_cpu.TESTED_JAXLIB):
    assert results["1"] == ["True", "False"]  # flag set, and no YNNPACK fusion compiled
  else:  # a jaxlib the flag was never measured on
    assert results["1"] == ["False", "True"]  # nothing set: XLA's default stays


def test_tuning_happens_only_on_cpu_and_can_be_turned_off():
  code = ("import os, sys; sys.argv = ['x']; before = dict(os.environ); "
          "from rgflow_jax.cli import xla_cpu; tuned = xla_cpu.tune_cpu_process(); "
          "import jax; print(tuned, dict(os.environ) == before, "
          "jax.config.values['jax_cpu_enable_async_dispatch'])")
  root = str(ROOT)
  # GLIBC_TUNABLES (set by conftest) stands for an allocator choice: no restart here.
  base = {k: v for k, v in os.environ.items()
          if k not in ("RGFLOW_CPU_TUNING", "JAX_PLATFORMS", "XLA_FLAGS")}
  # On CPU the environment changes only where the XLA flag applies (the jaxlib versions
  # it was measured on); the dispatch option (the third value) is set either way.
  flag = jax.__version__.startswith(xla_cpu.TESTED_JAXLIB)
  for extra, want in [({"JAX_PLATFORMS": "cuda"}, "False True True"),
                      ({"JAX_PLATFORMS": "cpu", "RGFLOW_CPU_TUNING": "0"}, "False True True"),
                      ({"JAX_PLATFORMS": "cpu"}, f"True {not flag} False")]:
    out = subprocess.run([sys.executable, "-c", code], env={**base, **extra}, cwd=root,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == want, (extra, out.stdout, out.stderr)


def test_malloc_restart_prefers_jemalloc_then_huge_pages():
  env = xla_cpu.malloc_env({"PATH": "/bin", "LD_PRELOAD": "libfoo.so"}, "linux", "never",
                           jemalloc="libjemalloc.so.2")
  assert env["LD_PRELOAD"] == "libjemalloc.so.2 libfoo.so" and env["PATH"] == "/bin"
  assert env["MALLOC_CONF"] == xla_cpu.JEMALLOC_CONF and "GLIBC_TUNABLES" not in env
  env = xla_cpu.malloc_env({"MALLOC_CONF": "narenas:1"}, "linux", "", jemalloc="libje.so")
  assert env["MALLOC_CONF"] == "narenas:1"  # the user's configuration stays
  env = xla_cpu.malloc_env({"PATH": "/bin"}, "linux", "madvise", jemalloc="")
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and "LD_PRELOAD" not in env
  env = xla_cpu.malloc_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "linux",
                           "always", jemalloc="")
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  for environ, platform, mode, je in [
      ({}, "darwin", "madvise", "libjemalloc.dylib"), ({}, "linux", "never", ""),
      ({}, "linux", "", ""), ({"RGFLOW_CPU_TUNING": "0"}, "linux", "madvise", "libje.so"),
      ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "linux", "madvise", "libje.so"),
      ({"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}, "linux", "madvise", "libje.so"),
      ({"LD_PRELOAD": "libjemalloc.so.2"}, "linux", "madvise", "libjemalloc.so.2")]:
    assert xla_cpu.malloc_env(environ, platform, mode, je) is None, environ


def test_use_fast_malloc_restarts_once_with_the_same_command():
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF")}
  code = ("import os, sys; sys.argv = ['x']; from rgflow_jax.cli import xla_cpu; "
          "print('ENV', os.environ.get('GLIBC_TUNABLES'), os.environ.get('LD_PRELOAD')); "
          "xla_cpu.use_fast_malloc()")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
  lines = [l for l in out.stdout.splitlines() if l.startswith("ENV")]
  want = xla_cpu.malloc_env(env)
  if want is None:
    assert lines == ["ENV None None"], out.stderr
  else:  # printed before the restart, then again by the restarted process
    assert lines == ["ENV None None", f"ENV {want.get('GLIBC_TUNABLES')} "
                                      f"{want.get('LD_PRELOAD')}"], out.stderr
    assert "cannot be preloaded" not in out.stderr


def test_release_freed_memory_returns_jemallocs_kept_pages():
  loaded = "jemalloc" in os.environ.get("LD_PRELOAD", "")
  assert xla_cpu.release_freed_memory() == loaded  # a no-op without jemalloc
  jemalloc = xla_cpu.find_jemalloc()
  if not jemalloc:
    return  # nothing more to check on a machine without jemalloc
  code = ("import numpy as np; from rgflow_jax.cli import xla_cpu\n"
          "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**30\n"
          "a = np.ones(2**27); a = None; kept = rss()\n"
          "print(xla_cpu.release_freed_memory(), kept, rss())")
  env = dict(os.environ, LD_PRELOAD=jemalloc, MALLOC_CONF=xla_cpu.JEMALLOC_CONF)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
  released, kept, after = out.stdout.split()
  assert released == "True", out.stderr
  assert float(kept) - float(after) > 0.9  # the freed 1 GiB was kept, then handed back


def test_synchronous_dispatch_is_set_before_the_backend_unless_turned_off():
  code = ("from rgflow_jax.cli import xla_cpu; xla_cpu.synchronous_dispatch(); import jax; "
          "print(jax.config.values['jax_cpu_enable_async_dispatch'])")
  base = {k: v for k, v in os.environ.items() if k != "RGFLOW_CPU_TUNING"}
  root = str(ROOT)
  started = "import jax; jax.numpy.zeros(1); " + code  # too late: a backend is up
  for prog, extra, want in [(code, {}, "False"),
                            (code, {"RGFLOW_CPU_TUNING": "0"}, "True"),
                            (started, {}, "True")]:
    out = subprocess.run([sys.executable, "-c", prog], env={**base, **extra}, cwd=root,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == want, (extra, out.stdout, out.stderr)
