"""Multi-host settings: bad ones refused in one line before anything starts (real processes:
tests/e2e/test_multihost.py)."""

import pytest

from helpers import load_config


@pytest.mark.parametrize("settings,env,message", [
    ({"num_processes": 2, "process_id": 2}, {}, "process id 2 is not in 0..1"),
    ({}, {"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "must be integers"),
    ({"coordinator_address": "127.0.0.1:99999"}, {}, "port 99999 of 127.0.0.1:99999 is not "
     r"in 1\.\.65535"),
    ({"coordinator_address": "127.0.0.1:0"}, {}, r"port 0 of 127.0.0.1:0 is not in"),
])
def test_bad_process_settings_are_refused_before_anything_starts(monkeypatch, settings, env,
                                                                 message):
  from jax._src import distributed  # noqa: PLC0415

  from rgflow_jax.io import multihost  # noqa: PLC0415
  c = load_config("msds1")
  c.hosts.distributed = True
  c.hosts.coordinator_address = "127.0.0.1:1"
  for key, value in settings.items():
    c.hosts[key] = value
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  with pytest.raises(multihost.DistributedError, match=message):
    multihost.initialize(c.hosts)
  assert distributed.global_state.client is None  # nothing was started
