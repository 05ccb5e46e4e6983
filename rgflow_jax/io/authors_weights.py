"""The authors' PyTorch state_dict <-> rgflow-jax parameters, tensor by tensor.

Their code (hongyehu/RG-Flow) stores an RG-Flow as a list of ``layers``, two per level:
``layers.{2h}`` is level h's aligned layer, applied first in the RG direction, and
``layers.{2h+1}`` its half-block-shifted layer, applied second. So their model is an
:class:`~rgflow_jax.core.rgflow.RGFlow` with ``layer_order="authors"``, ``layers.{2h}`` its
disentangler and ``layers.{2h+1}`` its decimator. Each layer is an RNVP block whose
``s_layers.{l}`` / ``t_layers.{l}`` are the s and t networks of its l-th RNVP layer:

    res_blocks.{r}.{2i}.scale          Swish slopes of hidden layer i      -> beta
    res_blocks.{r}.{2i+1}.weight_v     (out, in) weight-norm direction      -> v (in, out)
    res_blocks.{r}.{2i+1}.weight_g     (out, 1) weight-norm length          -> g (out,)
    res_blocks.{r}.{2i+1}.bias         (out,)                               -> b
    scale.scale                        the final scale, zero at init        -> scale

Both store w = g v / |v| with the norm over the inputs of each output. One difference
of layout: they flatten a k x k x C block in (c, a, b) order (NCHW), rgflow-jax in
(a, b, c) (NHWC), so every axis of block size is permuted. Buffers that the function
does not use (the checkerboard masks, which are checked; ``saved_mean`` / ``saved_var``,
statistics their Scale layer keeps for debugging; the prior's scale, checked) are
returned beside the parameters, so that :func:`export_state` can give them back.

Only numpy here: torch is needed only to read or write their ``.state`` files
(:mod:`rgflow_jax.cli.convert`).
"""

from __future__ import annotations

import math

import numpy as np

from rgflow_jax.core.errors import RGFlowError


PREFIXES = ("module.net.", "module.")  # nn.DataParallel's, around their wrapper's
LAPLACE_SCALE = 1.0 / math.sqrt(2.0)  # their Laplace prior's b: unit variance


class StateDictError(RGFlowError, ValueError):
  """A state_dict that does not fit the model; the message names the tensor."""


def block_permutation(block_size: int, channels: int) -> np.ndarray:
  """``ours = theirs[perm]`` along an axis of k*k*C block values."""
  k, c = block_size, channels
  a, b, ch = np.meshgrid(np.arange(k), np.arange(k), np.arange(c), indexing="ij")
  return (ch * k * k + a * k + b).reshape(-1)


def checkerboard(block_size: int, channels: int, parity: int) -> np.ndarray:
  """Their (C, k, k) coupling mask: 1 where a + b + parity is even ("mask_left" is
  parity 0, the sites rgflow-jax's first coupling of a layer keeps; "mask_right" 1)."""
  k = block_size
  even = (np.add.outer(np.arange(k), np.arange(k)) + parity) % 2 == 0
  return np.broadcast_to(even, (channels, k, k)).astype(np.float64)


MASKS = (("mask_left", 0), ("mask_right", 1))


def _strip_prefix(state: dict) -> dict:
  for prefix in PREFIXES:
    if state and all(name.startswith(prefix) for name in state):
      return {name[len(prefix):]: v for name, v in state.items()}
  return dict(state)


def _check_model(flow):
  if getattr(flow, "layer_order", None) != "authors":
    raise StateDictError("the authors' models apply the aligned layer of each level first: "
                         "use --config.model.layer_order=authors (the ':authors' variant)")
  if flow.share_levels:
    raise StateDictError("the authors' models have their own weights at every level: set "
                         "config.model.share_levels=False")


def _layer_names(flow):
  """(stage, their layer index) for every stage of the model: their ``layers`` list
  holds the stages in the order the RG direction runs them (``RGFlow.stages``)."""
  return [(stage, idx) for idx, stage in enumerate(flow.stages())]


def import_state(flow, state: dict) -> tuple[dict, dict]:
  """(params, buffers): the model's parameters (numpy, the state's dtype) from their state_dict,
  and the buffers it does not use. Refuses, in one line naming the tensor, a missing,
  extra or wrongly shaped tensor (a model of another size has the wrong shapes)."""
  _check_model(flow)
  state = {name: np.asarray(v) for name, v in _strip_prefix(state).items()}
  used, buffers = set(), {}

  def take(name, shape):
    if name not in state:
      raise StateDictError(f"the state_dict has no tensor {name!r} (shape {shape}) that this "
                           "model needs: was it saved for another n_layers / n_res / mlp_depth "
                           "or image size?")
    value = state[name]
    if value.shape != tuple(shape):
      raise StateDictError(f"tensor {name!r} has shape {value.shape}, this model needs "
                           f"{tuple(shape)}: it was saved for another size (check image_size, "
                           "channels, block_size and hidden against the run's)")
    used.add(name)
    return value

  k, c = flow.block_size, flow.channels
  dim, perm = k * k * c, block_permutation(k, c)
  params = {}
  for stage, idx in _layer_names(flow):
    n_layer, n_res, hidden, depth = flow.level_specs()[stage.level]
    widths = (dim,) + (hidden,) * depth + (dim,)
    layers = [{"beta": [], "v": [], "g": [], "b": []} for _ in widths[:-1]]
    scales = []
    for l in range(n_layer):
      for net in ("s", "t"):
        pre = f"layers.{idx}.{net}_layers.{l}."
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
          into = perm if i == 0 else slice(None)
          out = perm if i == len(widths) - 2 else slice(None)
          beta = np.stack([take(f"{pre}res_blocks.{r}.{2 * i}.scale", (fan_in,))[into]
                           for r in range(n_res)])
          lin = f"{pre}res_blocks.{{r}}.{2 * i + 1}."
          v = np.stack([take(lin.format(r=r) + "weight_v", (fan_out, fan_in)).T[into][:, out]
                        for r in range(n_res)])
          g = np.stack([take(lin.format(r=r) + "weight_g", (fan_out, 1))[:, 0][out]
                        for r in range(n_res)])
          b = np.stack([take(lin.format(r=r) + "bias", (fan_out,))[out] for r in range(n_res)])
          for key, value in zip(("beta", "v", "g", "b"), (beta, v, g, b), strict=True):
            layers[i][key].append(value)
        scales.append(take(f"{pre}scale.scale", (dim,))[perm])
        for extra in ("scale.saved_mean", "scale.saved_var"):
          if f"{pre}{extra}" in state:
            buffers[f"{pre}{extra}"] = take(f"{pre}{extra}", (dim,))
      for mask, parity in MASKS:
        name = f"layers.{idx}.{mask}"
        if name in state:
          value = take(name, (c, k, k))
          if not np.array_equal(value, checkerboard(k, c, parity)):
            raise StateDictError(f"tensor {name!r} is not the checkerboard mask rgflow-jax uses")
          buffers[name] = value
    # Leaves (n_layer, 2 = [s, t], ...) as conditioner.init_network stacks them.
    stack = lambda xs: np.stack(xs).reshape((n_layer, 2) + xs[0].shape)  # noqa: E731
    block = {"layers": [{key: stack(val) for key, val in layer.items()} for layer in layers],
             "scale": stack(scales)}
    params.setdefault(stage.param_key, {})[stage.layer] = block
  if "prior.scale" in state:
    scale = take("prior.scale", ())
    if flow.prior != "laplace" or not np.isclose(scale, LAPLACE_SCALE, rtol=1e-6, atol=0):
      raise StateDictError(f"tensor 'prior.scale' is {float(scale)}: rgflow-jax's prior is a "
                           f"unit-variance Laplace (scale {LAPLACE_SCALE:.6f}) and the "
                           f"config's prior is {flow.prior!r}")
    buffers["prior.scale"] = scale
  extra = sorted(set(state) - used)
  if extra:
    raise StateDictError(f"the state_dict has {len(extra)} tensor(s) this model does not "
                         f"have, e.g. {extra[0]!r}: was it saved for more levels or layers?")
  return params, buffers


def export_state(flow, params, buffers: dict | None = None) -> dict:
  """Their state_dict (float64 numpy, their names and shapes) from our ``params``;
  ``buffers`` from :func:`import_state`, else the values their code starts with."""
  _check_model(flow)
  k, c = flow.block_size, flow.channels
  dim, perm = k * k * c, block_permutation(k, c)
  inv = np.argsort(perm)
  buffers = buffers or {}
  out = {"prior.scale": np.asarray(buffers.get("prior.scale", LAPLACE_SCALE), np.float64)}
  for stage, idx in _layer_names(flow):
    n_layer, n_res, hidden, depth = flow.level_specs()[stage.level]
    block = params[stage.param_key][stage.layer]
    n_lin = depth + 1
    for mask, parity in MASKS:
      out[f"layers.{idx}.{mask}"] = np.asarray(
          buffers.get(f"layers.{idx}.{mask}", checkerboard(k, c, parity)))
    for l in range(n_layer):
      for n, net in enumerate(("s", "t")):
        pre = f"layers.{idx}.{net}_layers.{l}."
        for i in range(n_lin):
          layer = {key: np.asarray(v[l, n], np.float64) for key, v in block["layers"][i].items()}
          into = inv if i == 0 else slice(None)
          outo = inv if i == n_lin - 1 else slice(None)
          for r in range(n_res):
            out[f"{pre}res_blocks.{r}.{2 * i}.scale"] = layer["beta"][r][into]
            lin = f"{pre}res_blocks.{r}.{2 * i + 1}."
            out[lin + "bias"] = layer["b"][r][outo]
            out[lin + "weight_g"] = layer["g"][r][outo][:, None]
            out[lin + "weight_v"] = np.ascontiguousarray(layer["v"][r][into][:, outo].T)
        out[f"{pre}scale.scale"] = np.asarray(block["scale"][l, n], np.float64)[inv]
        out[f"{pre}scale.saved_mean"] = np.asarray(
            buffers.get(f"{pre}scale.saved_mean", np.zeros(dim)))
        out[f"{pre}scale.saved_var"] = np.asarray(
            buffers.get(f"{pre}scale.saved_var", np.ones(dim)))
  return out
