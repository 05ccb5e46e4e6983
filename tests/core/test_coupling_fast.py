"""The fast RNVP-block path (batched s/t, the layers, half-couplings and residual
blocks as loops, remat, the hand-written backward pass) against the literal masked
definition."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import perturb
from rgflow_jax.core import coupling, coupling_fast
from rgflow_jax.core.execution import Execution

# (block_size, channels, n_layer, n_res, mlp_depth): n_res 1 skips both the first
# layer's masked rows and the last layer's masked columns in the same block (unrolled);
# n_res 3 has a middle block that does neither; an odd block; one RNVP layer.
CASES = [(4, 3, 2, 1, 1), (4, 3, 2, 3, 2), (2, 1, 3, 2, 1), (6, 2, 1, 1, 2)]


def _random_block(k, c, n_layer, n_res, depth, dtype, n=6):
  dim = k * k * c
  params = coupling.init_block(jax.random.PRNGKey(0), n_layer, dim, 8, depth, n_res, dtype)
  params = perturb(params, jax.random.PRNGKey(1), 0.3)
  x = jax.random.normal(jax.random.PRNGKey(2), (n, k, k, c), dtype)
  return params, x


def _reference_encode(params, x):
  return jax.vmap(coupling.encode_block, in_axes=(None, 0))(params, x)


def apply(params, x, inverse=False, scan=False, **kw):
  """coupling_fast.apply_blocks with the execution options as keywords; ``scan``: all
  layers in one lax.scan (else unrolled)."""
  ex = Execution(scan_min_layers=1 if scan else 10**6, **kw)
  return coupling_fast.apply_blocks(params, x, inverse=inverse, execution=ex)


@pytest.mark.parametrize("case", CASES)
def test_fast_path_equals_the_masked_definition(x64, case):
  params, x = _random_block(*case, jnp.float64)
  y_ref, ld_ref = _reference_encode(params, x)
  assert float(jnp.abs(y_ref - x).max()) > 0.1  # a real transformation
  for scan in (False, True):
    y, ld = apply(params, x, scan=scan)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ld, ld_ref, rtol=0, atol=1e-12)
    x_back, ld_inv = apply(params, y, inverse=True, scan=scan)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ld_inv, -ld_ref, rtol=0, atol=1e-12)


def test_fast_path_float32_and_gradients_match_the_definition():
  params, x = _random_block(4, 3, 2, 2, 2, jnp.float32)
  y_ref, ld_ref = _reference_encode(params, x)
  y, ld = apply(params, x)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(ld, ld_ref, rtol=0, atol=1e-5)
  loss = lambda f: lambda p: jnp.sum(f(p)[0] ** 2) + jnp.sum(f(p)[1])  # noqa: E731
  g_ref = jax.grad(loss(lambda p: _reference_encode(p, x)))(params)
  for hand in (False, True):
    g_fast = jax.grad(loss(lambda p: apply(  # noqa: B023
        p, x, remat=True, hand_backward=hand)))(params)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref), strict=True):
      # seen: 2e-5 on |g| ~ 70. The hand-written slope gradients are a difference of
      # two sums (coupling_fast._mlp_bwd), so their rounding scales with the array's largest
      # gradient: seen 6.5e-5 on 1.7 where the largest is 15.
      atol = 1e-5 * max(1.0, float(jnp.abs(b).max())) if hand else 1e-5
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def _loss(params, x, **kw):
  y, ld = apply(params, x, **kw)
  return jnp.sum(y ** 2) + jnp.sum(jnp.sin(y)) + jnp.sum(ld)


def _grads(params, x, **kw):
  return jax.jit(jax.grad(lambda p, v: _loss(p, v, **kw), argnums=(0, 1)))(params, x)


@pytest.mark.parametrize("case", CASES)
def test_hand_backward_equals_autodiff(x64, case):
  """coupling_fast._mlp_bwd (slope gradients from the weight gradients) against autodiff,
  for parameters and input, unrolled and scanned, with and without remat."""
  params, x = _random_block(*case, jnp.float64)
  # every case unrolled; the richest (a middle residual block) also scanned and remat
  combos = ((False, False), (True, False), (False, True)) if case == CASES[1] else \
      ((False, False),)
  for scan, remat in combos:
    want = _grads(params, x, scan=scan, remat=remat)
    got = _grads(params, x, scan=scan, remat=remat, hand_backward=True)
    chex.assert_trees_all_close(got, want, rtol=1e-11, atol=1e-12)


def test_hand_backward_small_slopes_are_scaled_not_divided_by_zero(x64):
  """Below |beta| = _BETA_MIN the hidden slopes' gradient is the true one scaled by
  |beta| / _BETA_MIN (finite at beta = 0); elsewhere it is exact."""
  params, x = _random_block(4, 3, 1, 2, 2, jnp.float64)
  beta = np.array(params["layers"][1]["beta"])  # (n_layer, 2, n_res, hidden): hidden
  tiny = np.array([0.0, 1e-5, -4e-4, 9e-4, -2e-3, 0.3])
  beta[0, 0, 0, :tiny.size] = tiny
  params["layers"][1]["beta"] = jnp.asarray(beta)
  want = _grads(params, x)[0]["layers"][1]["beta"][0, 0, 0, :tiny.size]
  got = _grads(params, x, hand_backward=True)[0]["layers"][1]["beta"][0, 0, 0, :tiny.size]
  scale = np.minimum(np.abs(tiny) / coupling_fast._BETA_MIN, 1.0)
  assert np.all(np.abs(np.asarray(want)) > 1e-3)  # gradients worth comparing
  # At beta = 0 the true product beta * dbeta is 0, got as a difference of sums of
  # gradient-sized terms (~10) and divided by _BETA_MIN: its float64 rounding is about
  # 10 * 2.2e-16 / 1e-3 = 2e-12 (seen: 1.3e-12 with JAX 0.12.1), hence atol 1e-11.
  np.testing.assert_allclose(got, want * scale, rtol=1e-7, atol=1e-11)


SHARD_MAP_SCRIPT = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jax.sharding import NamedSharding, PartitionSpec as P
from test_coupling_fast import _grads, _loss, _random_block

params, x = _random_block(4, 3, 2, 2, 2, jnp.float64, n=8)
mesh = jax.make_mesh((jax.device_count(),), ("d",))
grad = jax.grad(lambda p, v: _loss(p, v, hand_backward=True), argnums=(0, 1))
sharded = jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=(P(), P("d")),
                                out_specs=(P(), P("d"))))
got = sharded(params, jax.device_put(x, NamedSharding(mesh, P("d"))))
want = _grads(params, x)
err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(want))
print(json.dumps({{"devices": jax.device_count(), "err": err, "scale": scale}}))
"""


def test_hand_backward_under_shard_map_sums_replicated_gradients():
  """Inside jax.shard_map (vma checks on), the hand-written backward pass returns the
  replicated parameters' gradient summed over the devices, as autodiff does; it equals
  the whole batch's autodiff gradient (float64, 2 host devices)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
  here = Path(__file__).resolve().parent
  script = SHARD_MAP_SCRIPT.format(root=str(here.parent), tests=str(here))
  out = subprocess.run([sys.executable, "-c", script], env=env,
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["devices"] == 2 and res["scale"] > 1e-3
  assert res["err"] <= 1e-11 * res["scale"], res


@pytest.mark.parametrize("k,c", [(2, 1), (4, 3), (6, 2)])
def test_halves_are_the_checkerboard_and_invert(k, c):
  dim = k * k * c
  x = jnp.arange(2 * dim, dtype=jnp.float32).reshape(2, dim)
  h = coupling_fast.to_halves(x, k, c)
  np.testing.assert_array_equal(coupling_fast.from_halves(h, k, c), x)
  mask = coupling_fast.to_halves(jnp.asarray(coupling.checkerboard(k, c)), k, c)
  np.testing.assert_array_equal(mask, np.repeat([1.0, 0.0], dim // 2))
  # Along another axis (as for weight rows) it is the same permutation.
  np.testing.assert_array_equal(coupling_fast.to_halves(x.T, k, c, axis=0), h.T)


def test_narrow_weight_gradients_are_computed_out_by_in():
  """The last linear layer's weight gradient comes out of XLA as the (out, in) product
  (the fast one on CPU), not folded back into (in, out): see coupling_fast._weight_grad."""
  k, c, hidden = 2, 3, 16
  dim = k * k * c
  params = perturb(coupling.init_block(jax.random.PRNGKey(0), 1, dim, hidden, 1, 2),
                   jax.random.PRNGKey(2))
  blocks = jax.random.normal(jax.random.PRNGKey(1), (64, k, k, c))
  loss = lambda p: jnp.sum(  # noqa: E731
      apply(p, blocks, hand_backward=True)[0] ** 2)
  hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
  narrow = f"({dim}|{dim // 2})"
  assert re.search(rf"f32\[2,{narrow},{hidden}\]\{{[^}}]*\}} dot\(", hlo)
  assert not re.search(rf"f32\[2,{hidden},{narrow}\]\{{[^}}]*\}} dot\(", hlo)
