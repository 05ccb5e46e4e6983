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
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np

log = logging.getLogger(__name__)


class DistributedError(RuntimeError):
  """A multi-process setting that cannot work; the message says which and how to fix."""


def _setting(config, key: str, env: str):
  """A config value if set, else the environment variable ``env`` (None if neither)."""
  value = config.get(key, None)
  if value not in (None, "", -1):
    return value
  return os.environ.get(env)


def initialize(config) -> bool:
  """``jax.distributed.initialize`` when ``config.distributed``; returns whether it did.

  The coordinator address, process count and process id come from
  ``config.coordinator_address`` / ``num_processes`` / ``process_id`` or, where those are
  unset, from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``;
  where all are unset, JAX detects them itself (Cloud TPU, SLURM, Open MPI, GKE). On the
  CPU the processes' collectives go through gloo over TCP.
  """
  if not config.get("distributed", False) or jax.distributed.is_initialized():
    return False
  address = _setting(config, "coordinator_address", "JAX_COORDINATOR_ADDRESS")
  try:
    count = _setting(config, "num_processes", "JAX_NUM_PROCESSES")
    index = _setting(config, "process_id", "JAX_PROCESS_ID")
    count = None if count is None else int(count)
    index = None if index is None else int(index)
  except ValueError as e:
    raise DistributedError(f"the process count and id must be integers ({e})") from None
  if count is not None and index is not None and not 0 <= index < count:
    raise DistributedError(f"process id {index} is not in 0..{count - 1}: give each of "
                           f"the {count} processes its own id")
  from rgflow_jax import storage, xla_cpu  # noqa: PLC0415
  if xla_cpu.runs_on_cpu():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=count, process_id=index,
        heartbeat_timeout_seconds=int(config.get("heartbeat_timeout_s", 100)),
        initialization_timeout=int(config.get("init_timeout_s", 300)))
  except Exception as e:  # noqa: BLE001  (gRPC, cluster detection and JAX raise many types)
    raise DistributedError(
        f"jax.distributed could not start ({storage.error_line(e)}); set --config.coordinator_address="
        "HOST:PORT (process 0's), --config.num_processes and --config.process_id, or "
        "the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables, "
        "and start every process within config.init_timeout_s") from None
  log.info("process %d of %d, %d local of %d devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


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
  from rgflow_jax import storage  # noqa: PLC0415
  return (f"process {jax.process_index()} of {jax.process_count()} lost a peer process "
          f"({storage.error_line(e)}); JAX's log above names it. Restart every process: "
          "the run resumes from its last complete checkpoint")


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)
