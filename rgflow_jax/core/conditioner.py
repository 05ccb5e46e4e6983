"""The conditioner networks s(.) and t(.) of an RNVP coupling: residual MLPs.

One network maps a flattened block (``dim = k*k*C`` values) to ``dim`` values:

    x <- (x + f(x)) / sqrt(2)            repeated n_res times
    f  = [Swish, Linear] over widths [dim, hidden, ..., hidden, dim]
    out = scale * x                      scale starts at zero

Linear layers are weight-normalised (w = g * v / |v| per output unit), v drawn
uniform in +-sqrt(3 * 2.81 / fan_in), g set so that w = v at init, biases zero. Swish
has a learnable per-feature slope: x * sigmoid(beta * x), beta = 1 at init. The zero
final scale makes every coupling, and so the whole flow, the identity at init.

Parameters are plain pytrees: the n_res residual blocks are stacked on a leading axis,
so stacking several networks (s and t, or the layers of an RNVP block) is one
``jax.vmap`` of :func:`init_network` over keys.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Weights uniform in +-sqrt(3 * INIT_GAIN / fan_in), biases zero: the init of the
# weight-normalised linear layers in the authors' code.
INIT_GAIN = 2.81


def widths(dim: int, hidden: int, depth: int) -> tuple[int, ...]:
  """Layer widths of ``f``: ``depth`` hidden layers of ``hidden`` units."""
  return (dim,) + (hidden,) * depth + (dim,)


def init_network(rng, dim: int, hidden: int, depth: int, n_res: int,
                 dtype=jnp.float32, stack: tuple[int, ...] = ()) -> dict:
  """Parameters of one residual-MLP conditioner, or of a ``stack`` of independent ones.

  With ``stack`` = (n_layer, 2), say, every leaf gets those leading axes; each network
  in the stack is drawn independently. Every layer's weights come from one random
  call (its compile, not its run, is what an init program spends its time on).
  """
  ws = widths(dim, hidden, depth)
  lead = stack + (n_res,)
  shapes = [lead + (fan_in, fan_out) for fan_in, fan_out in zip(ws[:-1], ws[1:], strict=True)]
  sizes = [math.prod(shape) for shape in shapes]
  unit = jax.random.uniform(rng, (sum(sizes),), dtype, -1.0, 1.0)
  layers, start = [], 0
  for shape, size in zip(shapes, sizes, strict=True):
    fan_in, fan_out = shape[-2:]
    v, g = weight_norm_init(unit[start:start + size].reshape(shape), fan_in)
    start += size
    layers.append({
        "beta": jnp.ones(lead + (fan_in,), dtype),
        "v": v,
        "g": g,
        "b": jnp.zeros(lead + (fan_out,), dtype),
    })
  return {"layers": layers, "scale": jnp.zeros(stack + (dim,), dtype)}


def swish(x, beta):
  return x * jax.nn.sigmoid(beta * x)


def init_weight_norm(rng, shape, fan_in: int, dtype, in_axes=(-2,)):
  """(v, g) of a weight-normalised layer of ``shape`` (outputs on the last axis, inputs
  on ``in_axes``): v uniform in +-sqrt(3 * INIT_GAIN / fan_in), g = |v| so that w = v."""
  return weight_norm_init(jax.random.uniform(rng, shape, dtype, -1.0, 1.0), fan_in, in_axes)


def weight_norm_init(unit, fan_in: int, in_axes=(-2,)):
  """(v, g) from ``unit``, uniform in [-1, 1): :func:`init_weight_norm`'s, scaled."""
  v = unit * math.sqrt(3.0 * INIT_GAIN / fan_in)
  return v, jnp.sqrt(jnp.sum(v * v, axis=in_axes))


def weight_norm(v, g, in_axes=(-2,)):
  """w = g * v / |v|, the norm over the input axes ``in_axes`` of each output unit (the
  last axis; leading axes of a dense layer's v are stacks of layers)."""
  norm = jnp.sqrt(jnp.sum(v * v, axis=in_axes, keepdims=True))
  return v * (jnp.expand_dims(g, in_axes) / norm)


def apply_network(params: dict, x: jnp.ndarray) -> jnp.ndarray:
  """Apply one conditioner to ``x`` of shape (..., dim), literally (the fast path in
  coupling_fast.py computes the same with s and t batched and the residual blocks as
  one loop)."""
  layers = params["layers"]
  n_res = layers[0]["v"].shape[0]
  weights = [weight_norm(p["v"], p["g"]) for p in layers]
  for r in range(n_res):
    h = x
    for p, w in zip(layers, weights, strict=True):
      h = swish(h, p["beta"][r]) @ w[r] + p["b"][r]
    x = (x + h) * (1.0 / math.sqrt(2.0))
  return x * params["scale"]

