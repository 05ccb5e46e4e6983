#!/usr/bin/env python3
"""Run N processes of one multi-process job on this machine, and wait for them.

    python scripts/launch_local.py -n 2 -- train.py --config configs/msds1.py:smoke \
        --workdir runs/two-procs

Each process gets ``--config.hosts.distributed=True`` and, through the environment JAX and
rgflow-jax read, the coordinator on 127.0.0.1, the process count and its own id; on the
CPU, ``--cpu_devices`` devices of its own. Their output is interleaved line by line,
each line prefixed with ``[pI]``. A process that ends with an error (or is killed) is
reported at once; the others then end on their own within the coordination service's
heartbeat timeout (``--config.hosts.heartbeat_timeout_s``), or are stopped after ``--grace_s``.
SIGTERM and Ctrl-C sent to the launcher go to process 0, which stops them all at one
step, with one checkpoint. The processes die with the launcher: killed (even by
SIGKILL), it leaves none behind holding the run's lock (on Linux each gets a SIGTERM
when the launcher dies, and saves and stops as on a SIGTERM). The exit status is the
first failing process's (128 + the signal for one killed by a signal), else 0.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _relay(proc, index: int, lock: threading.Lock):
  for line in proc.stdout:
    with lock:
      sys.stdout.write(f"[p{index}] {line}")
      sys.stdout.flush()


def _die_with_launcher(launcher_pid: int):
  """For each child, before it starts: SIGTERM when the launcher dies (Linux's
  parent-death signal), and an exit now if it already has."""
  def bind():
    if sys.platform.startswith("linux"):
      libc = ctypes.CDLL(None, use_errno=True)
      libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != launcher_pid:  # it died before the line above
      os._exit(1)
  return bind


def _status(returncode: int) -> int:
  return 128 - returncode if returncode < 0 else returncode


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("-n", "--num_processes", type=int, default=2)
  parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
  parser.add_argument("--cpu_devices", type=int, default=1,
                      help="CPU devices per process (when JAX runs on the CPU)")
  parser.add_argument("--grace_s", type=float, default=120.0,
                      help="after a process fails, how long the others may take to end")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="-- script.py and its flags, run by this Python")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command or args.num_processes < 1 or args.cpu_devices < 1:
    parser.error("give -n >= 1, --cpu_devices >= 1 and a command after --")
  port = args.port or free_port()
  flags = os.environ.get("XLA_FLAGS", "")
  procs, lock = [], threading.Lock()
  for i in range(args.num_processes):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES=str(args.num_processes), JAX_PROCESS_ID=str(i),
               PYTHONUNBUFFERED="1",
               XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={args.cpu_devices}")
    proc = subprocess.Popen([sys.executable, *command, "--config.hosts.distributed=True"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_die_with_launcher(os.getpid()))
    procs.append(proc)
    print(f"[launch] process {i} of {args.num_processes}: pid {proc.pid}", flush=True)
  # The relays start after every child has (a preexec_fn is safe only without threads).
  for i, proc in enumerate(procs):
    threading.Thread(target=_relay, args=(proc, i, lock), daemon=True).start()

  def forward(signum, frame):
    procs[0].send_signal(signal.SIGTERM)

  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  status, failed_at, ended = 0, None, set()
  start = time.time()

  def report_ended():
    nonlocal status, failed_at
    for i, p in enumerate(procs):
      if p.poll() is not None and i not in ended:
        ended.add(i)
        print(f"[launch] process {i} exited with status {_status(p.returncode)} after "
              f"{time.time() - start:.1f} s", flush=True)
        if p.returncode != 0 and failed_at is None:
          status, failed_at = _status(p.returncode), time.time()

  while len(ended) < len(procs):
    report_ended()
    if failed_at is not None and time.time() - failed_at > args.grace_s:
      for i, p in enumerate(procs):
        if p.poll() is None:
          print(f"[launch] process {i} still running {args.grace_s:.0f} s after a peer "
                "failed: killed", flush=True)
          p.kill()
    time.sleep(0.05)
  return status


if __name__ == "__main__":
  sys.exit(main())
