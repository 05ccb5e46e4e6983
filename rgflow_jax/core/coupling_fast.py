"""The RNVP block, arranged for speed: the same arithmetic as :mod:`rgflow_jax.core.coupling`.

Every block of a layer goes through one matrix product per linear layer: the blocks
are rows of an (N, dim) matrix, and s and t, which read the same input, run as ONE
batched product over a leading axis of 2. Where a block's conditioners are unrolled
(the CPU configs) its values are reordered once into the two checkerboard halves A
(m = 1) and B (m = 0), each dim/2 wide and contiguous, and the parameters' dim-sized
axes to match, so that a half-coupling reads its conditioning half and writes its free
half by slicing; a scanned block stays in the natural order, masked.

What repeats can be written once into the program, so that it compiles in the time of
one residual block whatever the depth: the RNVP layers as one ``lax.scan`` over their
stacked parameters, and the n_res residual blocks of a conditioner as one loop over
theirs (``Execution.scan_min_layers`` says from how many on: XLA:CPU runs short
unrolled loops faster, and unrolled, the first and last residual blocks skip the
arithmetic on masked values: :func:`_half_coupling`).

On top of that, optional (an :class:`rgflow_jax.core.execution.Execution` chooses):
remat, bfloat16 matmul inputs, and a hand-written backward pass for the conditioners
(:func:`_mlp_bwd`) with its XLA:CPU layout choices and its ``shard_map`` cotangent sums.
``tests/core/test_coupling_fast.py`` checks all of it against the definition.

The one entry point is :func:`apply_blocks`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from rgflow_jax.core import conditioner, coupling
from rgflow_jax.core.execution import DEFAULT, Execution

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


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


def uses_halves(n_res: int, execution: Execution) -> bool:
  """Whether a block with ``n_res`` residual blocks runs on checkerboard halves (its
  conditioners unrolled) or on the masked full width in the natural order (scanned)."""
  return n_res < execution.scan_min_layers


def prepare(params, block_size: int, channels: int, execution: Execution = DEFAULT) -> dict:
  """A block's parameters ready for the fast path under ``execution``: weight-normalised
  (in its matmul dtype), dim-sized axes in [A | B] order (:func:`to_halves`) where its
  conditioners are unrolled (:func:`uses_halves`), each linear layer's w, b and beta
  with axes (n_layer, n_res, 2 = [s, t], ...) (the order the loops over them slice),
  ``scale`` (n_layer, 2, dim). Leading axes before these (a stack of blocks) are kept.

  Done once per call of a layer (small arrays), outside the loop over RNVP layers.
  """
  halves = uses_halves(params["layers"][0]["b"].shape[-2], execution)
  matmul_dtype = execution.matmul_jnp_dtype
  order = (lambda a, axis: to_halves(a, block_size, channels, axis)) if halves else \
      (lambda a, axis: a)  # noqa: E731
  layers = params["layers"]
  w = [conditioner.weight_norm(p["v"], p["g"]) for p in layers]
  w[0] = order(w[0], -2)
  w[-1] = order(w[-1], -1)
  if matmul_dtype is not None:
    w = [a.astype(matmul_dtype) for a in w]
  b = [p["b"] for p in layers]
  b[-1] = order(b[-1], -1)
  beta = [p["beta"] for p in layers]
  beta[0] = order(beta[0], -1)
  res_first = lambda arrays, axis: [jnp.swapaxes(a, axis, axis + 1)  # noqa: E731
                                    for a in arrays]
  return {"w": res_first(w, -4), "b": res_first(b, -3), "beta": res_first(beta, -3),
          "scale": order(params["scale"], -1)}


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


def _weight_grad(a, g, narrow: bool, out_dtype):
  """dW = a^T g over the rows (and the s/t batch axis) of a (2, N, i) and g (2, N, o).

  For a narrow output (the last layer of a residual block: o = dim or dim/2 against
  hundreds of inputs) it is computed as the (out, in) product g^T a and transposed
  after, behind an optimisation barrier so that XLA does not fold it back (XLA:CPU's
  (in, out) product is the slower one there: docs/benchmark.md, "Choices in the code").
  tests/core/test_coupling_fast.py checks the compiled gradient.
  """
  dims = (((1,), (1,)), ((0,), (0,)))
  if not narrow:
    return jax.lax.dot_general(a, g, dims, preferred_element_type=out_dtype)
  gt_a = jax.lax.dot_general(g, a, dims, preferred_element_type=out_dtype)
  return jnp.swapaxes(jax.lax.optimization_barrier(gt_a), 1, 2)


# Below this |beta| a hidden Swish's slope gradient is scaled down (see _mlp_bwd).
_BETA_MIN = 1e-3


@jax.custom_vjp
def _mlp(ws, bs, betas, x):
  """One residual block's f: h <- Swish_beta(h) @ w + b for each linear layer.

  ``x`` (1 or 2, N, in) -> (2, N, out); ws[i] (2, in_i, out_i), bs[i] (2, out_i),
  betas[i] (2, in_i); the leading 2 is the s/t batch. The forward pass is the plain
  composition; the backward pass (:func:`_mlp_bwd`) is written out by hand, which
  saves a pass over every hidden activation (see there).
  """
  return _mlp_fwd(ws, bs, betas, x)[0]


def _forward(ws, bs, betas, x, swish):
  """h <- swish(h) @ w + b over the layers; also each layer's input h and Swish output."""
  h, hs, acts = x, [], []
  for w, b, beta in zip(ws, bs, betas, strict=True):
    hs.append(h)
    acts.append(swish(h, beta[:, None]))
    h = _matmul(acts[-1], w, x.dtype) + b[:, None]
  return h, hs, acts


def _mlp_fwd(ws, bs, betas, x):
  # Saved for the backward pass: each layer's input h and its Swish output a (the
  # product's input). The backward's sigmoid(beta h) is the forward's expression, so
  # XLA reuses the forward's value for it.
  h, hs, acts = _forward(ws, bs, betas, x, conditioner.swish)
  return h, (ws, bs, betas, hs, acts)


def _mlp_bwd(res, g):
  """Backward pass of :func:`_mlp`: the usual chain rule, except for the slopes.

  Autodiff sums the slope gradient of every Swish over all N rows from an (N, width)
  product of its own: dbeta = sum_n g_a h^2 s (1 - s), s = sigmoid(beta h), one more
  pass over the activation and a column sum. For a Swish whose input is the previous
  layer's output, h = a' W' + b', the same number follows from the weight gradients,
  which are computed anyway:

    beta * dbeta = sum_n h g_h - sum_n a g_a
                 = colsum(W' * dW') + b' * db' - rowsum(W * dW)

  (first line: g_h = g_a (s + beta h s (1 - s)) and a = h s; second: h = a' W' + b',
  dW' = a'^T g_h, db' = sum_n g_h, g_a = g W^T, dW = a^T g), a sum over a weight-sized
  array instead of over N rows.
  Exact up to rounding (float64: 1e-15 relative, tested at 1e-11). Where
  |beta| < _BETA_MIN it divides by +-_BETA_MIN instead, which returns the gradient
  scaled by |beta| / _BETA_MIN (same sign, finite; no Swish slope comes near that in
  practice, they start at 1). The first layer's input is the residual stream, not a
  product's output: its slope gradient is summed directly.
  """
  ws, bs, betas, hs, acts = res
  n = len(ws)
  dws, dbs, dbetas = [None] * n, [None] * n, [None] * n
  sum_rows = lambda v: jnp.sum(v, axis=1)  # noqa: E731
  for i in reversed(range(n)):
    w, beta, h, a = ws[i], betas[i], hs[i], acts[i]
    dws[i] = _weight_grad(a.astype(w.dtype), g.astype(w.dtype), i == n - 1, h.dtype)
    dbs[i] = sum_rows(g)
    g_a = _matmul_t(g, w, h.dtype)
    bh = beta[:, None] * h
    s = jax.nn.sigmoid(bh)
    g_h = g_a * (s + bh * s * (1.0 - s))
    if i == 0:
      dbetas[i] = sum_rows(g_a * h * h * s * (1.0 - s))
    g = g_h
  for i in range(1, n):
    h = hs[i]
    w_prev, w = ws[i - 1].astype(h.dtype), ws[i].astype(h.dtype)
    via_weights = (jnp.sum(w_prev * dws[i - 1], axis=1) + bs[i - 1] * dbs[i - 1]
                   - jnp.sum(w * dws[i], axis=2))
    beta = betas[i].astype(h.dtype)
    tiny = jnp.abs(beta) < _BETA_MIN
    safe_beta = jnp.where(tiny, jnp.where(beta < 0, -_BETA_MIN, _BETA_MIN), beta)
    dbetas[i] = (via_weights / safe_beta).astype(betas[i].dtype)
  dws = [d.astype(w.dtype) for d, w in zip(dws, ws, strict=True)]
  x = hs[0]
  g_x = jnp.sum(g, axis=0, keepdims=True) if x.shape[0] == 1 else g
  typed = lambda cts, primals: [_like_primal(c, p) for c, p in zip(cts, primals, strict=True)]  # noqa: E731
  return (typed(dws, ws), typed(dbs, bs), typed(dbetas, betas),
          _like_primal(g_x.astype(x.dtype), x))


def _like_primal(ct, primal):
  """Inside ``jax.shard_map``: a cotangent summed over the mesh axes along which it
  varies but its primal does not (a replicated weight used on per-device rows gets
  the sum of every device's gradient, as autodiff gives it). Outside: ``ct``."""
  varying = lambda a: jax.typeof(a).manual_axis_type.varying  # noqa: E731
  extra = tuple(sorted(varying(ct) - varying(primal)))
  return jax.lax.psum(ct, extra) if extra else ct


_mlp.defvjp(_mlp_fwd, _mlp_bwd)


# For autodiff (decode, or hand_backward off): Swish recomputed in the backward pass
# from its input (kept anyway) instead of storing its sigmoid: one elementwise pass
# over each hidden activation instead of two in the forward pass, and about half the
# step's memory at paper size.
_swish = jax.checkpoint(conditioner.swish)


def _mlp_plain(ws, bs, betas, x):
  """:func:`_mlp` for autodiff of any kind (forward mode included)."""
  return _forward(ws, bs, betas, x, _swish)[0]


def _matmul_t(g, w, out_dtype):
  """g (2, N, o) x w (2, i, o)^T -> (2, N, i): the input gradient of :func:`_matmul`."""
  return jax.lax.dot_general(g.astype(w.dtype), w, (((2,), (2,)), ((0,), (0,))),
                             preferred_element_type=out_dtype)


def _half_coupling(p, x, m, first: bool, ex: Execution, inverse: bool):
  """One half-coupling of an RNVP layer on x (N, dim): the sites where the checkerboard
  is 0 given those where it is 1 (``first``), or the other way round. Returns (x,
  log|det| (N,)); ``inverse`` undoes it (a half-coupling leaves its conditioning half
  as it was, so s and t are the same; the inverse takes autodiff's backward pass).
  ``p`` is one RNVP layer of :func:`prepare`'s output. ``m``: the checkerboard (dim,)
  where x is in the natural order (a scanned block), None where x is in [A | B] order
  (unrolled conditioners, :func:`uses_halves`): A is the half where it is 1.

  The residual stream x <- (x + f(x)) / sqrt(2) starts as the conditioning half, zeros
  on the free one, for both networks. As one loop (at least ``ex.scan_min_layers``
  residual blocks) every block is the same code on the masked full width, and so is the
  update. Unrolled, the first block reads only the conditioning rows of its first linear
  layer (Swish(0) = 0: the others multiply zeros) and the last computes only the free
  columns of its last one (the only ones read), and the update is on the free half:
  less arithmetic, which the small models on CPU feel.
  """
  half = x.shape[-1] // 2
  a, b = slice(0, half), slice(half, 2 * half)
  src, dst = (a, b) if first else (b, a)
  mlp = _mlp if ex.hand_backward and not inverse else _mlp_plain
  blocks = {k: p[k] for k in ("w", "b", "beta")}
  n_res = p["w"][0].shape[0]
  if m is not None:
    m = m if first else 1.0 - m

    def res_block(stream, r):
      return (stream + mlp(r["w"], r["b"], r["beta"], stream)) * _INV_SQRT2

    x_in = x * m
    stream = _loop(res_block, jnp.broadcast_to(x_in[None], (2,) + x_in.shape), blocks,
                   n_res, True)
    out = stream * p["scale"][:, None, :]
    s, t = jnp.tanh(out[0]) * (1.0 - m), out[1] * (1.0 - m)
    x = (x - t) * jnp.exp(-s) if inverse else x * jnp.exp(s) + t
    return x, jnp.sum(s, axis=-1)
  x_src, pad = x[:, src], [(0, 0), (src.start, 2 * half - src.stop)]
  stream = None  # the full-width stream (2, N, dim), once it has been formed
  for r, blk in enumerate(unstack_tree(blocks, n_res)):
    ws, bs, betas = list(blk["w"]), list(blk["b"]), list(blk["beta"])
    if r == 0:
      ws[0], betas[0] = ws[0][:, src], betas[0][:, src]
    if r == n_res - 1:
      ws[-1], bs[-1] = ws[-1][:, :, dst], bs[-1][:, dst]
    h = mlp(ws, bs, betas, x_src[None] if r == 0 else stream)
    if r == 0 and n_res == 1:
      stream = h  # the input is zero on dst
    elif r == 0:
      stream = h + jnp.pad(x_src, pad)[None]
    elif r == n_res - 1:
      stream = stream[..., dst] + h
    else:
      stream = stream + h
    stream = stream * _INV_SQRT2
  out = stream * p["scale"][:, None, dst]
  s, t = jnp.tanh(out[0]), out[1]
  x_dst = (x[:, dst] - t) * jnp.exp(-s) if inverse else x[:, dst] * jnp.exp(s) + t
  x = jnp.concatenate([x_src, x_dst] if first else [x_dst, x_src], axis=-1)
  return x, jnp.sum(s, axis=-1)


def _layer_encode(p, x, m, ex: Execution):
  """One RNVP layer on x (N, dim): the free sites of the checkerboard ``m`` given the
  others, then the other way round."""
  x, ld_b = _half_coupling(p, x, m, True, ex, False)
  x, ld_a = _half_coupling(p, x, m, False, ex, False)
  return x, ld_b + ld_a


def _layer_decode(p, x, m, ex: Execution):
  """The inverse of :func:`_layer_encode`: its half-couplings undone last to first."""
  x, ld_a = _half_coupling(p, x, m, False, ex, True)
  x, ld_b = _half_coupling(p, x, m, True, ex, True)
  return x, -(ld_a + ld_b)


def apply_blocks(params, blocks, *, inverse: bool = False,
                 execution: Execution = DEFAULT):
  """Every block of ``blocks`` (N, k, k, C) through one RNVP block.

  Returns (out (N, k, k, C), log|det| (N,)): the RG direction (encode) by default,
  the generation direction (decode) with ``inverse=True``; equal to
  :func:`rgflow_jax.core.coupling.encode_block` / ``decode_block`` on each block.
  ``execution``: the RNVP layers as one loop when there are at least
  ``scan_min_layers`` (else a copy each), remat of each layer, bfloat16 matmul inputs,
  and (encode only) the hand-written backward pass of :func:`_mlp_bwd`: faster
  reverse-mode gradients, but no forward-mode derivatives (``jax.jvp`` / ``jacfwd``
  raise) through it.
  """
  prep = prepare(params, blocks.shape[2], blocks.shape[3], execution)
  return apply_prepared(prep, blocks, inverse=inverse, execution=execution)


def apply_prepared(prep, blocks, *, inverse: bool = False, execution: Execution = DEFAULT):
  """:func:`apply_blocks` with the parameters already through :func:`prepare` (with the
  same ``execution``): for callers that run one block's parameters on many
  small batches, e.g. every step of a loop over a cone (rgflow_jax.core.local)."""
  n, k, _, c = blocks.shape
  n_layer = prep["scale"].shape[0]
  halves = uses_halves(prep["b"][0].shape[-3], execution)  # prepare()'s decision
  x = blocks.reshape(n, -1)
  if halves:  # the halves are sliced: no mask
    x, m = to_halves(x, k, c), None
  else:
    m = jnp.asarray(coupling.checkerboard(k, c), blocks.dtype).reshape(-1)
  layer_fn = functools.partial(_layer_decode if inverse else _layer_encode, m=m,
                               ex=execution)
  if execution.remat:
    layer_fn = jax.checkpoint(layer_fn)

  def body(carry, p):
    x, log_det = carry
    x, ld = layer_fn(p, x)
    return x, log_det + ld

  x, log_det = _loop(body, (x, jnp.zeros_like(x[:, 0])), prep, n_layer,
                     n_layer >= execution.scan_min_layers, reverse=inverse)
  return (from_halves(x, k, c) if halves else x).reshape(blocks.shape), log_det


def _loop(body, carry, stacked, n: int, scan: bool, reverse: bool = False):
  """``carry = body(carry, slice)`` for each of the ``n`` slices of ``stacked`` along its
  leading axis (last to first with ``reverse``): one ``lax.scan``, or unrolled."""
  if scan:
    return jax.lax.scan(lambda c, sl: (body(c, sl), None), carry, stacked,
                        reverse=reverse)[0]
  slices = unstack_tree(stacked, n)
  for sl in (reversed(slices) if reverse else slices):
    carry = body(carry, sl)
  return carry
