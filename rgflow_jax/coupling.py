"""The RNVP block: the bijector that acts inside one k x k x C block.

One RNVP layer is two affine half-couplings under a checkerboard mask ``m`` (1 where
a + b is even, the same for every channel) that share ONE pair of networks s, t:

    y  = x * exp(s(m x)) + t(m x),           s, t vanish where m = 1
    y' = y * exp(s((1-m) y)) + t((1-m) y),   s, t vanish where m = 0

with s = tanh(.) of the s-network. log|det dy'/dx| = sum of both s. An RNVP block
stacks ``n_layer`` such layers (parameters stacked on a leading axis).

How it is computed (the model is the one above; only the arithmetic is arranged for
speed). Every block of a layer goes through one matrix product per linear layer: the
blocks are rows of an (N, dim) matrix, and s and t, which read the same input, run as
ONE batched product over a leading axis of 2. The block's values are reordered once
into the two checkerboard halves A (m = 1) and B (m = 0), each dim/2 wide and
contiguous, and the parameters' dim-sized axes are reordered to match. A half-coupling
then reads only the conditioning half and writes only the free half: the input rows
of the first linear layer that would multiply masked zeros, and the output columns of
the last one that the mask would zero, are never computed. The masked reference
(:func:`reference_layer_encode`) is kept for tests.

Direction names: ``encode`` is the RG direction (image -> latent, the paper's R),
``decode`` the generation direction G = R^-1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rgflow_jax import conditioner

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def checkerboard(block_size: int, channels: int) -> np.ndarray:
  """(k*k*C,) float mask, 1 where a + b is even, flattened in (a, b, c) order."""
  a = np.arange(block_size)
  m = ((a[:, None] + a[None, :]) % 2 == 0).astype(np.float64)
  return np.repeat(m[:, :, None], channels, axis=2).reshape(-1)


def init_block(rng, n_layer: int, dim: int, hidden: int, depth: int, n_res: int,
               dtype=jnp.float32) -> dict:
  """Parameters of an RNVP block: leaves have leading axes (n_layer, 2 = [s, t])."""
  return conditioner.init_network(rng, dim, hidden, depth, n_res, dtype,
                                  stack=(n_layer, 2))


# ------------------------------------------------------------ checkerboard halves
def to_halves(x, block_size: int, channels: int, axis: int = -1):
  """Reorder a k*k*C axis in (a, b, c) order to [half A | half B] (A: a + b even).

  Within a half the order is (parity of a, a // 2, b // 2, c). Reshapes, one
  transpose and a concatenation: no gather.
  """
  x = jnp.moveaxis(x, axis, -1)
  k2, lead = block_size // 2, x.shape[:-1]
  n = len(lead)
  t = x.reshape(lead + (k2, 2, k2, 2, channels))  # (a', pa, b', pb, c)
  t = t.transpose(tuple(range(n)) + (n + 1, n + 3, n, n + 2, n + 4))  # (pa, pb, a', b', c)
  flat = lambda u: u.reshape(lead + (-1,))  # noqa: E731
  out = jnp.concatenate([flat(t[..., 0, 0, :, :, :]), flat(t[..., 1, 1, :, :, :]),
                         flat(t[..., 0, 1, :, :, :]), flat(t[..., 1, 0, :, :, :])], axis=-1)
  return jnp.moveaxis(out, -1, axis)


def from_halves(x, block_size: int, channels: int, axis: int = -1):
  """Inverse of :func:`to_halves`."""
  x = jnp.moveaxis(x, axis, -1)
  k2, lead = block_size // 2, x.shape[:-1]
  n = len(lead)
  t00, t11, t01, t10 = (u.reshape(lead + (k2, k2, channels))
                        for u in jnp.split(x, 4, axis=-1))
  t = jnp.stack([jnp.stack([t00, t01], axis=-4), jnp.stack([t10, t11], axis=-4)],
                axis=-5)  # (pa, pb, a', b', c)
  t = t.transpose(tuple(range(n)) + (n + 2, n, n + 3, n + 1, n + 4))  # (a', pa, b', pb, c)
  return jnp.moveaxis(t.reshape(lead + (-1,)), -1, axis)


def prepare(params, block_size: int, channels: int, matmul_dtype=None) -> dict:
  """A block's parameters ready for the fast path: weight-normalised, dim-sized axes
  in [A | B] order; each linear layer's w, b and beta become a list over residual
  blocks of arrays with leading axes (n_layer, 2 = [s, t]).

  Done once per call of a layer (small arrays), outside the loop over RNVP layers.
  """
  halves = lambda a, axis: to_halves(a, block_size, channels, axis)  # noqa: E731
  layers = params["layers"]
  w = [conditioner.weight_norm(p["v"], p["g"]) for p in layers]
  w[0] = halves(w[0], -2)
  w[-1] = halves(w[-1], -1)
  beta = [p["beta"] for p in layers]
  beta[0] = halves(beta[0], -1)
  b = [p["b"] for p in layers]
  b[-1] = halves(b[-1], -1)
  if matmul_dtype is not None:
    w = [a.astype(matmul_dtype) for a in w]
  # One list entry per residual block (axis 2), split once: the gradient of a split
  # is one concatenate, where per-block slices would each pad a zero-filled copy of
  # the whole stack.
  per_res = lambda arrays: [unstack(a, 2) for a in arrays]  # noqa: E731
  return {"w": per_res(w), "b": per_res(b), "beta": per_res(beta),
          "scale": halves(params["scale"], -1)}


def unstack(a, axis: int = 0) -> list:
  """The slices of ``a`` along ``axis``, from one split (cheap to differentiate)."""
  return [jnp.squeeze(x, axis) for x in jnp.split(a, a.shape[axis], axis=axis)]


def unstack_tree(tree, n: int) -> list:
  """A pytree whose leaves share a leading axis of size n -> n pytrees."""
  leaves, treedef = jax.tree.flatten(tree)
  parts = [unstack(leaf, 0) for leaf in leaves]
  return [jax.tree.unflatten(treedef, [p[i] for p in parts]) for i in range(n)]


def _matmul(a, w, out_dtype):
  """(2, N, i) x (2, i, o) -> (2, N, o), accumulating in ``out_dtype``."""
  return jax.lax.dot_general(a.astype(w.dtype), w, (((2,), (1,)), ((0,), (0,))),
                             preferred_element_type=out_dtype)


def _matmul_narrow(a, w, out_dtype):
  """:func:`_matmul` for the last linear layer of a residual block, whose output is
  narrow (dim or dim/2 columns against hundreds of input rows).

  The same product, with the weight passed transposed behind an optimisation barrier.
  This only changes how the backward pass computes the weight's gradient: as the
  (out, in) product g^T a, transposed after, instead of the (in, out) product a^T g,
  which XLA:CPU runs 1.6-3.8x slower when out is 24 or 48 (measured on a 2-core Xeon,
  N = 4096 rows: in = 512, out = 24: 1.2 ms instead of 4.4 ms; in = 128: 0.8 instead
  of 1.3-1.6 ms). Without the barrier XLA folds the transpose back into the product
  (tests/test_coupling.py checks the compiled gradient).
  """
  wt = jax.lax.optimization_barrier(jnp.swapaxes(w, 1, 2))
  return jax.lax.dot_general(a.astype(w.dtype), wt, (((2,), (2,)), ((0,), (0,))),
                             preferred_element_type=out_dtype)


# Swish recomputed in the backward pass from its input (the matrix product's output,
# which is kept anyway) instead of storing its sigmoid: the forward pass then makes one
# elementwise pass over each hidden activation instead of two. paper-msds step 8.23 ->
# 8.03 s, a 1-layer 512-wide model 0.99 -> 0.97 s (back to back, 2-core Xeon).
_swish = jax.checkpoint(conditioner.swish)


def _shift_and_log_scale(p, x_in, src: slice, dst: slice):
  """s and t (each (N, dim/2)) on the free half ``dst``, given the conditioning half
  ``x_in`` (N, dim/2) at ``src``; ``p`` is one RNVP layer of :func:`prepare`'s output.

  The residual stream x <- (x + f(x)) / sqrt(2) starts as x_in on ``src`` and zeros
  on ``dst``; Swish(0) = 0, so the first linear layer needs only the ``src`` rows, and
  only the ``dst`` columns of the last one are ever read.
  """
  n_res, n_lin = len(p["w"][0]), len(p["w"])
  dtype = x_in.dtype
  stream = None  # the full-width stream (2, N, dim), once it has been formed
  for r in range(n_res):
    h = x_in[None] if r == 0 else stream
    for i in range(n_lin):
      w, b, beta = p["w"][i][r], p["b"][i][r], p["beta"][i][r]
      if r == 0 and i == 0:
        w, beta = w[:, src], beta[:, src]
      if r == n_res - 1 and i == n_lin - 1:
        w, b = w[:, :, dst], b[:, dst]
      matmul = _matmul_narrow if i == n_lin - 1 else _matmul
      h = matmul(_swish(h, beta[:, None]), w, dtype) + b[:, None]
    if r == 0 and n_res == 1:
      stream = h  # the stream is zero on dst
    elif r == 0:
      pad = [(0, 0), (src.start, h.shape[-1] - src.stop)]
      stream = h + jnp.pad(x_in, pad)[None]
    elif r == n_res - 1:
      stream = stream[..., dst] + h
    else:
      stream = stream + h
    stream = stream * _INV_SQRT2
  out = stream * p["scale"][:, None, dst]
  return jnp.tanh(out[0]), out[1]


def _layer_encode(p, xa, xb):
  half = xa.shape[-1]
  a, b = slice(0, half), slice(half, 2 * half)
  s, t = _shift_and_log_scale(p, xa, a, b)
  xb = xb * jnp.exp(s) + t
  log_det = jnp.sum(s, axis=-1)
  s, t = _shift_and_log_scale(p, xb, b, a)
  xa = xa * jnp.exp(s) + t
  return xa, xb, log_det + jnp.sum(s, axis=-1)


def _layer_decode(p, xa, xb):
  half = xa.shape[-1]
  a, b = slice(0, half), slice(half, 2 * half)
  s, t = _shift_and_log_scale(p, xb, b, a)
  xa = (xa - t) * jnp.exp(-s)
  log_det = jnp.sum(s, axis=-1)
  s, t = _shift_and_log_scale(p, xa, a, b)
  xb = (xb - t) * jnp.exp(-s)
  return xa, xb, -(log_det + jnp.sum(s, axis=-1))


def apply_blocks(params, blocks, *, inverse: bool = False, remat: bool = False,
                 scan: bool = False, matmul_dtype=None):
  """Every block of ``blocks`` (N, k, k, C) through one RNVP block.

  Returns (out (N, k, k, C), log|det| (N,)): the RG direction (encode) by default,
  the generation direction (decode) with ``inverse=True``. ``scan`` runs the RNVP
  layers as one ``lax.scan`` (compile time flat in n_layer) instead of unrolled;
  ``remat`` recomputes each layer's activations in the backward pass.
  """
  n, k, _, c = blocks.shape
  prep = prepare(params, k, c, matmul_dtype)
  x = to_halves(blocks.reshape(n, -1), k, c)
  half = x.shape[-1] // 2
  xa, xb = x[:, :half], x[:, half:]
  layer_fn = _layer_decode if inverse else _layer_encode
  if remat:
    layer_fn = jax.checkpoint(layer_fn)
  log_det = jnp.zeros((n,), blocks.dtype)
  if scan:
    def body(carry, p):
      xa, xb, log_det = carry
      xa, xb, ld = layer_fn(p, xa, xb)
      return (xa, xb, log_det + ld), None
    (xa, xb, log_det), _ = jax.lax.scan(body, (xa, xb, log_det), prep, reverse=inverse)
  else:
    layers = unstack_tree(prep, params["scale"].shape[0])
    for p in (reversed(layers) if inverse else layers):
      xa, xb, ld = layer_fn(p, xa, xb)
      log_det = log_det + ld
  out = from_halves(jnp.concatenate([xa, xb], axis=-1), k, c)
  return out.reshape(blocks.shape), log_det


# ------------------------------------------------------------- masked reference
def reference_layer_encode(layer_params, x, mask):
  """One RNVP layer on ONE flattened block (dim,), written literally with masks and
  two separate networks: the definition the fast path is tested against."""
  log_det = 0.0
  for m in (mask, 1.0 - mask):
    s = conditioner.apply_network(jax.tree.map(lambda a: a[0], layer_params), x * m)
    t = conditioner.apply_network(jax.tree.map(lambda a: a[1], layer_params), x * m)
    s, t = jnp.tanh(s) * (1.0 - m), t * (1.0 - m)
    x = x * jnp.exp(s) + t
    log_det = log_det + jnp.sum(s)
  return x, log_det
