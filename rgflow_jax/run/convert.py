"""Models trained with the authors' PyTorch code, in and out of rgflow-jax (behind
``rgflow-convert``, rgflow_jax/cli/convert.py).

:func:`import_run` reads one of their checkpoints (a ``torch.save``d ``{'flow':
state_dict, ...}``, with or without nn.DataParallel's ``module.net.`` prefix; or an
``.npz`` of the state_dict's arrays, which needs no torch), maps every tensor onto the
config's model (which must use ``layer_order=authors``: the ``:authors`` variant) and
writes an Orbax checkpoint at step 0 with a fresh optimizer, which rgflow-eval and
rgflow-compare load like any run and rgflow-train fine-tunes. :func:`export_run` writes
a run's latest parameters as their state_dict, for their code
(``flow.load_state_dict(torch.load(f)['flow'])``). Reading and writing ``.state`` files
needs torch (``pip install "rgflow-jax[torch]"``).
"""

from __future__ import annotations

import io
import json

import jax
import numpy as np

from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import authors_weights, checkpoint, storage
from rgflow_jax.run import jit_steps, run_config, trained

BUFFERS = "authors_buffers.npz"  # the state_dict entries the model does not use


class ConvertError(RGFlowError, RuntimeError):
  """A conversion that cannot be made; one line."""


def _torch():
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    raise ConvertError('reading or writing the authors\' .state files needs torch: pip '
                       'install "rgflow-jax[torch]" (or give the state_dict as .npz)') from None
  return torch


def read_state(path) -> dict:
  """Their state_dict as {name: numpy array}, from a torch checkpoint or an .npz."""
  raw = storage.as_path(path).read_bytes()
  if str(path).endswith(".npz"):
    with np.load(io.BytesIO(raw)) as f:
      prefixed = [k for k in f.files if k.startswith("state/")]  # as the harness writes
      return {k.removeprefix("state/"): f[k] for k in (prefixed or f.files)}
  torch = _torch()
  try:
    obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001  (pickle and torch raise many types)
    raise ConvertError(f"{path} is not a torch checkpoint torch can read "
                       f"({storage.error_line(e)})") from None
  state = obj.get("flow", obj) if isinstance(obj, dict) else None
  if not isinstance(state, dict) or not state:
    raise ConvertError(f"{path} holds no state_dict (their checkpoints are dicts with a "
                       "'flow' entry)")
  return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def import_run(config, path, workdir) -> int:
  """Write their checkpoint at ``path`` into ``workdir`` as a step-0 run; returns the
  number of parameters."""
  workdir = storage.check_writable(workdir, "workdir")
  if (workdir / "checkpoints").exists() and list((workdir / "checkpoints").iterdir()):
    raise ConvertError(f"{workdir} already holds checkpoints: import into a new --workdir")
  flow = run_config.build_model(config)
  dtype = run_config.param_dtype(config)
  params, buffers = authors_weights.import_state(flow, read_state(path))
  state = jit_steps.init_state(flow, config, dtype,
                              params=jax.tree.map(lambda a: np.asarray(a, dtype), params))
  storage.write_json_atomic(workdir / "config.json", json.loads(config.to_json()))
  buf = io.BytesIO()
  np.savez(buf, **buffers)
  storage.write_bytes_atomic(workdir / BUFFERS, buf.getvalue())
  ckpts = checkpoint.Checkpoints(workdir, config.train.checkpoint.keep)
  ckpts.save(0, state, {"step": 0, "skipped_steps": 0, "best_test_bpd": None,
                        "data_state": None, "imported_from": str(path)})
  ckpts.close()
  return flow.num_params(params)


def export_run(config, workdir, path) -> int:
  """Write the workdir's latest parameters to ``path`` as their ``{'flow': state_dict}``."""
  flow, params, step, *_ = trained.load_params(config, workdir, "latest")
  buffers = {}
  saved = storage.as_path(workdir) / BUFFERS
  if saved.exists():
    with np.load(io.BytesIO(saved.read_bytes())) as f:
      buffers = {k: f[k] for k in f.files}
  state = authors_weights.export_state(flow, params, buffers)
  dtype = np.asarray(jax.tree.leaves(params)[0]).dtype
  state = {k: np.asarray(v, dtype) for k, v in state.items()}
  buf = io.BytesIO()
  if str(path).endswith(".npz"):
    np.savez(buf, **{f"state/{k}": v for k, v in state.items()})
  else:
    torch = _torch()
    torch.save({"flow": {k: torch.from_numpy(np.array(v)) for k, v in state.items()}},  # 0-d kept
               buf)
  storage.write_bytes_atomic(path, buf.getvalue())
  return step
