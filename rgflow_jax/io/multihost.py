"""Many processes (``jax.distributed``): start-up, and the decisions they take together.

One training run may span several processes: the hosts of a TPU pod slice, several
GPU hosts, or N processes on one machine (``scripts/launch_local.py``). Each process
runs the same program on its own devices; XLA computations over global arrays are
collectives that every process must join, so every decision that changes what the
program computes next is taken by all of them together:

- a stop (SIGTERM on any one process, a preemption notice): JAX's preemption sync
  point, where every process stops at the same step and saves one checkpoint;
- the time limit and a full disk: :func:`any_process` at steps every process visits;
- non-finite steps: read from the replicated metrics, the same on every process.

A lost process cannot hang the others: the coordination service misses its heartbeats
and, after ``heartbeat_timeout_s``, ends every process with a message naming it.
With one process every function here is the single-process answer, without collectives.

Start-up fails in one line, never in JAX's C++ abort: an address that does not resolve
or a coordinator port in use is found before JAX starts; processes that do not all
arrive within ``init_timeout_s`` end with a line saying so (:func:`initialize`'s
watchdog); processes started with different settings refuse to run together
(:func:`agree_on_settings`). A process that ends with an error leaves through
:func:`exit_now`, past JAX's shutdown barrier, which would wait for the lost peer and
then abort.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import threading

import jax
import numpy as np

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io.platform import runs_on_cpu

log = logging.getLogger(__name__)


class DistributedError(RGFlowError, RuntimeError):
  """A multi-process setting that cannot work; the message says which and how to fix."""


def _setting(hosts, key: str, env: str):
  """``config.hosts.<key>`` if set, else the environment variable ``env`` (None if
  neither)."""
  value = hosts[key]
  if value not in (None, "", -1):
    return value
  return os.environ.get(env)


def initialize(hosts) -> bool:
  """``jax.distributed.initialize`` when ``config.hosts.distributed`` (``hosts`` is
  ``config.hosts``); returns whether it did.

  The coordinator address, process count and process id come from
  ``hosts.coordinator_address`` / ``num_processes`` / ``process_id`` or, where those are
  unset, from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``;
  where all are unset, JAX detects them itself (Cloud TPU, SLURM, Open MPI, GKE). On the
  CPU the processes' collectives go through gloo over TCP.
  """
  if not hosts.distributed or jax.distributed.is_initialized():
    return False
  address = _setting(hosts, "coordinator_address", "JAX_COORDINATOR_ADDRESS")
  try:
    count = _setting(hosts, "num_processes", "JAX_NUM_PROCESSES")
    index = _setting(hosts, "process_id", "JAX_PROCESS_ID")
    count = None if count is None else int(count)
    index = None if index is None else int(index)
  except ValueError as e:
    raise DistributedError(f"the process count and id must be integers ({e})") from None
  if count is not None and index is not None and not 0 <= index < count:
    raise DistributedError(f"process id {index} is not in 0..{count - 1}: give each of "
                           f"the {count} processes its own id")
  from rgflow_jax.io import storage  # noqa: PLC0415
  if address:
    check_coordinator(address, coordinator=index == 0)
  if runs_on_cpu():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX writes persistent-cache entries from process 0 and every process loads them;
    # on the CPU such a loaded program deadlocked its first gloo collective (JAX 0.12.1,
    # both processes waiting to receive). The CPU's many-process programs compile fast.
    jax.config.update("jax_enable_compilation_cache", False)
  timeout = int(hosts.init_timeout_s)
  who = f"process {index} of {count}" if index is not None and count else "this process"
  late = (f"error: {who}: the run's processes did not all connect to the coordinator "
          f"{address or '(found by JAX)'} within config.hosts.init_timeout_s={timeout} s; "
          f"start every process (ids 0..{(count or 1) - 1}, the same command) within that time")
  # JAX's own timeout ends the process in a C++ abort: this thread ends it first, in
  # one line. JAX is given a margin so that the watchdog always fires first.
  watchdog = threading.Timer(timeout, exit_now, args=(late,))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=count, process_id=index,
        heartbeat_timeout_seconds=int(hosts.heartbeat_timeout_s),
        initialization_timeout=timeout + 30)
  except Exception as e:  # noqa: BLE001  (gRPC, cluster detection and JAX raise many types)
    raise DistributedError(
        f"jax.distributed could not start ({storage.error_line(e)}); set "
        "--config.hosts.coordinator_address=HOST:PORT (process 0's), "
        "--config.hosts.num_processes and --config.hosts.process_id, or "
        "the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables, "
        "and start every process within config.hosts.init_timeout_s") from None
  finally:
    watchdog.cancel()
  log.info("process %d of %d, %d local of %d devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def parse_address(address: str) -> tuple[str, int]:
  """(host, port) of ``HOST:PORT`` (``[v6]:PORT`` too); a one-line DistributedError for
  anything else, a port out of 1..65535 included."""
  host, sep, port = address.rpartition(":")
  if not sep or not port.isdigit() or not host:
    raise DistributedError(f"the coordinator address {address!r} is not HOST:PORT "
                           "(process 0's host and a free port, e.g. 10.0.0.1:8476)")
  if not 1 <= int(port) <= 65535:
    raise DistributedError(f"the coordinator port {port} of {address} is not in 1..65535")
  return host.strip("[]"), int(port)


def check_coordinator(address: str, coordinator: bool) -> None:
  """One-line DistributedError for a coordinator address that cannot work: not
  HOST:PORT, a host that does not resolve, or (on process 0, which serves it) a port
  another program holds. JAX itself would abort in C++ after its timeout."""
  host, port = parse_address(address)
  try:
    socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except OSError as e:
    raise DistributedError(f"the coordinator host {host!r} of {address} does not resolve "
                           f"({e.strerror or e}); give process 0's address") from None
  if not coordinator:
    return
  with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
    # As gRPC binds: a port a finished run left in TIME_WAIT is free to take again.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("", port))
    except OSError as e:
      raise DistributedError(f"the coordinator port {port} is in use on this host ({e.strerror}"
                             f"): another run's coordinator? Pick a free port in "
                             f"--config.hosts.coordinator_address (HOST:PORT)") from None


# Settings that may differ between the processes of one run (keys, or sections): the
# process's own id, where each host finds the data and keeps its compiled programs.
PER_PROCESS_KEYS = ("hosts.process_id", "hosts.coordinator_address", "data.location",
                    "execution.compilation_cache_dir", "progress")


def agree_on_settings(config, workdir, choices: dict | None = None) -> None:
  """Every process of the run must have the same config (but :data:`PER_PROCESS_KEYS`),
  workdir and ``choices`` (the command's other options that decide what the run does),
  or they would run different programs and wait for each other forever.
  A collective at start-up compares them; a mismatch is a one-line DistributedError on
  every process, naming the first keys that differ. No-op with one process."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # noqa: PLC0415
  from rgflow_jax.io import metrics  # noqa: PLC0415
  flat = {k: v for k, v in metrics.flatten(json.loads(config.to_json())).items()
          if not any(k == p or k.startswith(p + ".") for p in PER_PROCESS_KEYS)}
  text = json.dumps({"workdir": str(workdir), **(choices or {}), **flat}, sort_keys=True,
                    default=str)
  digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
  digests = np.asarray(multihost_utils.process_allgather(digest))
  if (digests == digests[0]).all():
    return
  # They differ: gather every process's settings (padded to one length) to name the keys.
  raw = np.frombuffer(text.encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.asarray([raw.size]))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:raw.size] = raw
  texts = np.asarray(multihost_utils.process_allgather(padded))
  other = next(i for i in range(len(digests)) if (digests[i] != digests[0]).any())
  first = json.loads(texts[0][:int(sizes[0])].tobytes())
  theirs = json.loads(texts[other][:int(sizes[other])].tobytes())
  keys = sorted(k for k in set(first) | set(theirs) if first.get(k) != theirs.get(k))
  shown = ", ".join(f"{k} {first.get(k)} (process 0) vs {theirs.get(k)} (process {other})"
                    for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
  raise DistributedError(f"the processes of this run were started with different settings: "
                         f"{shown}; start every process with the same command")


def exit_now(message: str, status: int = 1) -> None:
  """Print ``message`` (one line) and end this process at once: no atexit handlers, so
  not JAX's distributed shutdown, which waits for every peer at a barrier and, with one
  gone, aborts in C++ after the heartbeat timeout. Checkpoints are written
  synchronously, so nothing is lost."""
  try:
    sys.stdout.flush()
  finally:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    os._exit(status)


def many_processes() -> bool:
  """Whether this process is one of several of a run (jax.distributed is up)."""
  return jax.distributed.is_initialized() and jax.process_count() > 1


def any_process(flag: bool) -> bool:
  """True on every process if ``flag`` is true on any (a collective: all must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # noqa: PLC0415
  return bool(np.any(multihost_utils.process_allgather(np.asarray([bool(flag)]))))


def preempted(step: int) -> bool:
  """Whether every process has reached the step where a stop notice (SIGTERM sent to
  any one of them, or the scheduler's preemption notice) asks them all to save and
  stop. Called after every step by every process, as JAX requires."""
  if not jax.distributed.is_initialized():
    return False
  from jax.experimental import multihost_utils  # noqa: PLC0415
  return multihost_utils.reached_preemption_sync_point(step)


def lost_peer_message(e: BaseException) -> str | None:
  """In words, an error from a collective that failed because another process of the
  run is gone (None for any other error, and with one process)."""
  text = str(e).strip()
  if jax.process_count() == 1 or not any(k in text for k in ("Gloo", "coordination",
                                                              "UNAVAILABLE")):
    return None
  from rgflow_jax.io import storage  # noqa: PLC0415
  return (f"process {jax.process_index()} of {jax.process_count()} lost a peer process "
          f"({storage.error_line(e)}); JAX's log above names it. Restart every process: "
          "the run resumes from its last complete checkpoint")


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)
