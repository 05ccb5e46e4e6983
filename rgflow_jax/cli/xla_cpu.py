"""CPU process tuning that makes training faster (an XLA flag, the allocator, dispatch).

Nothing here runs on import. :func:`tune_cpu_process`, called first thing by the entry
points (``train.py``, ``eval.py``, the benchmark), applies all three pieces below, and
only when the run will be on CPU (:func:`runs_on_cpu`: ``JAX_PLATFORMS`` names cpu
first, or no GPU/TPU plugin for JAX is installed). ``RGFLOW_CPU_TUNING=0`` turns all
of it off; a library user who calls ``train_and_evaluate`` directly gets none of it.

With jaxlib 0.10 to 0.12, XLA:CPU sends every matrix product to YNNPACK; for this
model's products (thousands of rows, 24 to 512 wide) Eigen's kernels are faster
(docs/benchmark.md). So :func:`configure` adds

    --xla_cpu_experimental_ynn_fusion_type=     (an empty list: no YNNPACK fusions)

to ``XLA_FLAGS``, when all of these hold: the variable does not already set that flag
(yours wins), ``RGFLOW_CPU_TUNING`` is not ``0``, the jaxlib version is one this was
measured on (an unknown flag would stop a newer XLA at start-up), and JAX has not
started a backend yet (flags are read once).

The allocator. XLA:CPU allocates a training step's buffers (gigabytes at the paper's
size) afresh on every step. glibc hands every block above 32 MiB straight back to the
kernel when it is freed, so each step faults its memory in again and the kernel zeroes
it. :func:`use_fast_malloc`, called first thing by ``train.py``, ``eval.py`` and the
benchmark, restarts the process once (Linux only):

- with jemalloc, where the system has it (``libjemalloc.so.2``, Debian/Ubuntu package
  ``libjemalloc2``), preloaded and told to keep freed memory for reuse and to back it
  with transparent huge pages (``MALLOC_CONF``, below, unless you set your own): the
  step then reuses the same pages. The process keeps its peak memory until it exits
  (the peak recurs every step anyway) or calls :func:`release_freed_memory`, as the
  benchmark does between models;
- otherwise with glibc's ``glibc.malloc.hugetlb=1`` tunable (transparent huge pages:
  2 MiB faults instead of 4 KiB ones), where transparent huge pages are on "madvise"
  or "always".

Neither happens if ``RGFLOW_CPU_TUNING=0``, or if ``LD_PRELOAD`` already names an
allocator (``*malloc*``), or ``GLIBC_TUNABLES`` already sets ``glibc.malloc.hugetlb``:
your choice wins, and the restarted process does not restart again.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

from rgflow_jax.io.platform import runs_on_cpu

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
TESTED_JAXLIB = ("0.10.", "0.11.", "0.12.")  # the versions the flag was measured faster on


def _backends_started() -> bool:
  if "jax" not in sys.modules:  # no backend without JAX (and importing it is a second)
    return False
  try:
    from jax._src import xla_bridge  # noqa: PLC0415
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # noqa: BLE001  (private API; assume the safe answer)
    return True


def _jaxlib_version() -> str:
  try:
    from jaxlib import version  # noqa: PLC0415
    return version.__version__
  except Exception:  # noqa: BLE001
    return ""


def configure(environ=None, jaxlib_version: str | None = None,
              backends_started: bool | None = None) -> bool:
  """Add the flag to ``environ['XLA_FLAGS']`` if the conditions above hold.

  Returns whether it changed anything. The arguments exist for tests; by default
  they are read from the process.
  """
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS", "")
  if environ.get("RGFLOW_CPU_TUNING", "1") == "0" or YNN_FLAG in flags:
    return False
  version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
  if not version.startswith(TESTED_JAXLIB):
    return False
  if _backends_started() if backends_started is None else backends_started:
    return False
  environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=".strip()
  return True


HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"
JEMALLOC_CONF = "thp:always,metadata_thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1"
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_mode() -> str:
  """The bracketed mode of transparent huge pages ('' where there are none)."""
  try:
    with open(_THP) as f:
      text = f.read()
  except OSError:
    return ""
  return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else ""


def find_jemalloc() -> str:
  """jemalloc's shared library as the dynamic loader names it ('' if not installed)."""
  return ctypes.util.find_library("jemalloc") or ""


def malloc_env(environ=None, platform: str | None = None, thp_mode: str | None = None,
               jemalloc: str | None = None) -> dict | None:
  """The environment to restart with, or None when nothing should change. The
  arguments after ``environ`` exist for tests; by default they are read from the
  machine."""
  environ = dict(os.environ if environ is None else environ)
  platform = sys.platform if platform is None else platform
  preload = environ.get("LD_PRELOAD", "")
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (environ.get("RGFLOW_CPU_TUNING", "1") == "0" or not platform.startswith("linux")
      or "malloc" in preload or "glibc.malloc.hugetlb" in tunables):
    return None
  jemalloc = find_jemalloc() if jemalloc is None else jemalloc
  if jemalloc:
    environ["LD_PRELOAD"] = f"{jemalloc} {preload}".strip()
    environ.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return environ
  if (_thp_mode() if thp_mode is None else thp_mode) not in ("madvise", "always"):
    return None
  environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGETLB_TUNABLE}" if tunables else HUGETLB_TUNABLE
  return environ


def release_freed_memory() -> bool:
  """Hand memory that jemalloc keeps for reuse back to the system, e.g. between two
  models in one process (what the first one kept would otherwise add to the second's
  peak). Returns whether jemalloc is loaded here (else this does nothing)."""
  try:
    mallctl = ctypes.CDLL(None).mallctl
  except (AttributeError, OSError):
    return False
  all_arenas = 4096  # jemalloc's MALLCTL_ARENAS_ALL
  return mallctl(f"arena.{all_arenas}.purge".encode(), None, None, None, 0) == 0


def synchronous_dispatch() -> None:
  """Run each CPU computation to its end before the call returns
  (``jax_cpu_enable_async_dispatch`` off), unless ``RGFLOW_CPU_TUNING=0`` or a
  backend has started. (JAX reads that option from ``jax.config`` only, not from the
  environment: to keep asynchronous dispatch, set ``RGFLOW_CPU_TUNING=0``, or call
  ``jax.config.update("jax_cpu_enable_async_dispatch", True)`` after this.)

  With asynchronous dispatch the next training step could allocate its temporaries
  (10 GiB at paper-msds) before the previous step had freed its own: measured with
  jemalloc, paper-msds's resident set went from 13 to 22 GiB at the second or third
  step in five of six runs of 5-8 steps, and paper CelebA's benchmark was OOM-killed
  on 24 GiB. With it off: 13.0 GiB over eight steps, the same 6.1 s per step.
  """
  if os.environ.get("RGFLOW_CPU_TUNING") == "0" or _backends_started():
    return
  import jax  # noqa: PLC0415
  jax.config.update("jax_cpu_enable_async_dispatch", False)


def tune_cpu_process(dispatch: bool = True) -> bool:
  """The entry points' one call: on CPU (and unless ``RGFLOW_CPU_TUNING=0``), the XLA
  flag, the allocator restart and synchronous dispatch (``dispatch=False``: left to the
  caller, which calls :func:`synchronous_dispatch` once its command line is read, so
  that a bad one is refused before JAX is imported). Returns whether it tuned."""
  if os.environ.get("RGFLOW_CPU_TUNING", "1") == "0" or not runs_on_cpu():
    return False
  configure()
  use_fast_malloc(dispatch)  # may restart the process, which then arrives here again
  return True


def use_fast_malloc(dispatch: bool = True) -> None:
  """Restart this process with jemalloc or huge pages, if :func:`malloc_env` says so,
  and turn on :func:`synchronous_dispatch`.
  Call it first thing in a script's ``__main__`` (it does not return when it
  restarts); the restarted process sees the change and carries on."""
  env = malloc_env()
  if env is None:  # this process carries on (and a restarted one arrives here)
    if dispatch:
      synchronous_dispatch()
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)


__all__ = ["configure", "find_jemalloc", "malloc_env", "release_freed_memory",
           "runs_on_cpu", "synchronous_dispatch", "tune_cpu_process", "use_fast_malloc"]
