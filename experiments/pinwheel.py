"""The pinwheel of App. E (Fig. E1): why a sparse prior helps explain the latents.

A 2-D flow of affine couplings is trained on a four-arm pinwheel with a Laplace and
with a Gaussian prior (both unit variance). Prior samples are coloured by the
quadrant of latent space they come from and mapped to data space; with the Laplace
prior each quadrant should land on one arm. The number for it:

    purity = mean over the four quadrants of the share of that quadrant's samples
             that land on the quadrant's majority arm (0.25 = no relation, 1 = one
             arm per quadrant),

where a mapped sample's arm is that of its nearest labelled data point. ``distinct``
says whether the four majority arms are four different arms. Runs in well under two
minutes on a CPU:

    python -m experiments.pinwheel --workdir runs/pinwheel
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgflow_jax.core import priors
from rgflow_jax.io import storage

ARMS = 4


def sample_pinwheel(rng, n: int, radial_std=0.3, tangential_std=0.1, rate=0.25):
  """(points (n, 2), arm labels (n,)): the four-arm pinwheel of Johnson et al. (2016)."""
  k_feat, k_arm = jax.random.split(rng)
  feats = jax.random.normal(k_feat, (n, 2)) * jnp.array([radial_std, tangential_std])
  feats = feats + jnp.array([1.0, 0.0])
  arms = jax.random.randint(k_arm, (n,), 0, ARMS)
  angles = 2 * math.pi * arms / ARMS + rate * jnp.exp(feats[:, 0])
  c, s = jnp.cos(angles), jnp.sin(angles)
  x = 2.0 * jnp.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], -1)
  return x, arms


# --------------------------------------------------------------------- flow
def init_flow(rng, n_layers: int = 8, hidden: int = 64):
  """Stacked parameters of ``n_layers`` affine couplings with 2-hidden-layer MLPs."""
  def layer(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (1, hidden)), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, hidden)) / math.sqrt(hidden),
            "b2": jnp.zeros(hidden),
            "w3": jnp.zeros((hidden, 2)), "b3": jnp.zeros(2)}
  return jax.vmap(layer)(jax.random.split(rng, n_layers))


def _shift_log_scale(p, cond):
  h = jnp.tanh(cond @ p["w1"] + p["b1"])
  h = jnp.tanh(h @ p["w2"] + p["b2"])
  out = h @ p["w3"] + p["b3"]
  return jnp.tanh(out[:, :1]), out[:, 1:]


def encode(params, x):
  """Data -> latent, with log|det dz/dx| per point. Layer k changes coordinate k % 2."""
  n_layers = params["b3"].shape[0]
  log_det = jnp.zeros(x.shape[0])
  for k in range(n_layers):
    p = jax.tree.map(lambda a, k=k: a[k], params)
    a, b = (x[:, 1:], x[:, :1]) if k % 2 == 0 else (x[:, :1], x[:, 1:])
    s, t = _shift_log_scale(p, a)
    b = b * jnp.exp(s) + t
    x = jnp.concatenate([b, a] if k % 2 == 0 else [a, b], axis=1)
    log_det = log_det + s[:, 0]
  return x, log_det


def decode(params, z):
  """Latent -> data, the inverse of :func:`encode`."""
  n_layers = params["b3"].shape[0]
  for k in reversed(range(n_layers)):
    p = jax.tree.map(lambda a, k=k: a[k], params)
    a, b = (z[:, 1:], z[:, :1]) if k % 2 == 0 else (z[:, :1], z[:, 1:])
    s, t = _shift_log_scale(p, a)
    b = (b - t) * jnp.exp(-s)
    z = jnp.concatenate([b, a] if k % 2 == 0 else [a, b], axis=1)
  return z


def log_prob(params, x, prior: str):
  z, log_det = encode(params, x)
  return priors.log_density(prior, z).sum(axis=1) + log_det


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def train(rng, prior: str, steps: int = 3000, batch: int = 512, lr: float = 3e-3):
  """Adam (cosine-decayed) on fresh pinwheel batches; returns (params, NLL per step)."""
  k_init, k_data = jax.random.split(rng)
  params = init_flow(k_init)
  opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
  loss = lambda p, x: -jnp.mean(log_prob(p, x, prior))

  def step(carry, key):
    p, state = carry
    x, _ = sample_pinwheel(key, batch)
    value, grads = jax.value_and_grad(loss)(p, x)
    updates, state = opt.update(grads, state)
    return (optax.apply_updates(p, updates), state), value

  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)),
                                     jax.random.split(k_data, steps))
  return params, losses


# ---------------------------------------------------------------- measuring
def nearest_arm(points, data, labels, chunk: int = 2048) -> np.ndarray:
  """Arm of each point: the label of its nearest data point."""
  points, data = np.asarray(points), np.asarray(data)
  out = []
  for i in range(0, len(points), chunk):
    d = ((points[i:i + chunk, None, :] - data[None]) ** 2).sum(-1)
    out.append(np.asarray(labels)[d.argmin(axis=1)])
  return np.concatenate(out) if out else np.zeros(0, int)


def quadrant(z) -> np.ndarray:
  """0..3: (z1 >= 0, z2 >= 0) -> 0, (<, >=) -> 1, (<, <) -> 2, (>=, <) -> 3."""
  z = np.asarray(z)
  return np.select([(z[:, 0] >= 0) & (z[:, 1] >= 0), (z[:, 0] < 0) & (z[:, 1] >= 0),
                    (z[:, 0] < 0) & (z[:, 1] < 0)], [0, 1, 2], 3)


def purity(groups, arms) -> dict:
  """Mean over groups of the share on the group's majority arm, and the arms."""
  shares, majority = [], []
  for g in range(4):
    a = np.asarray(arms)[np.asarray(groups) == g]
    counts = np.bincount(a, minlength=ARMS) if len(a) else np.zeros(ARMS, int)
    majority.append(int(counts.argmax()))
    shares.append(float(counts.max() / max(len(a), 1)))
  return {"purity": float(np.mean(shares)), "per_group": shares,
          "majority_arms": majority, "distinct": len(set(majority)) == 4}


def run(workdir, seeds=(0, 1, 2), steps: int = 3000, n_eval: int = 20_000,
        figure: bool = True) -> dict:
  """Train both priors for each seed; write pinwheel.json (and pinwheel.png)."""
  workdir = storage.as_path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data, labels = sample_pinwheel(jax.random.PRNGKey(10_000), 5000)
  results, shown = {"steps": steps, "seeds": list(seeds), "eval_samples": n_eval}, {}
  for prior in priors.PRIORS:
    per_seed = []
    for seed in seeds:
      t0 = time.perf_counter()
      params, losses = train(jax.random.PRNGKey(seed), prior, steps)
      z = priors.sample(prior, jax.random.PRNGKey(1000 + seed), (n_eval, 2))
      x = np.asarray(jax.jit(decode)(params, z))
      arms = nearest_arm(x, data, labels)
      test_x, _ = sample_pinwheel(jax.random.PRNGKey(20_000 + seed), 5000)
      nll = -float(jnp.mean(jax.jit(log_prob, static_argnums=2)(params, test_x, prior)))
      per_seed.append({"seed": seed, "test_nll": nll, "final_train_nll": float(losses[-1]),
                       "seconds": time.perf_counter() - t0, **purity(quadrant(z), arms)})
      if seed == seeds[0]:
        shown[prior] = (np.asarray(z[:1000]), x[:1000], np.asarray(quadrant(z[:1000])))
    pur = [r["purity"] for r in per_seed]
    results[prior] = {"purity_mean": float(np.mean(pur)), "purity_min": float(np.min(pur)),
                      "purity_max": float(np.max(pur)),
                      "distinct_share": float(np.mean([r["distinct"] for r in per_seed])),
                      "test_nll_mean": float(np.mean([r["test_nll"] for r in per_seed])),
                      "runs": per_seed}
  storage.write_json_atomic(workdir / "pinwheel.json", results)
  if figure:
    plot_pinwheel(shown, np.asarray(data), np.asarray(labels), results,
                  workdir / "pinwheel.png")
  return results


QUADRANT_COLOURS = np.array(["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e"])


def plot_pinwheel(shown: dict, data: np.ndarray, labels: np.ndarray, results: dict,
                  out_path):
  """Fig. E1: per prior, its density, latent samples by quadrant, the same samples
  mapped to data space, and the data coloured by arm. ``shown``: prior -> (latent
  samples z, their images x, the quadrant of each z)."""
  import matplotlib  # noqa: PLC0415 (matplotlib only when drawing)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, axes = plt.subplots(len(shown), 4, figsize=(12, 3.1 * len(shown)), squeeze=False)
  grid = np.linspace(-3, 3, 200)
  gx, gy = np.meshgrid(grid.astype(np.float32), grid.astype(np.float32))
  for row, (prior, (z, x, q)) in zip(axes, shown.items(), strict=True):
    dens = np.exp(np.asarray(priors.log_density(prior, np.stack([gx, gy], -1))).sum(-1))
    row[0].contourf(gx, gy, dens, levels=20, cmap="viridis")
    row[0].set_title(f"{prior} prior density")
    row[1].scatter(z[:, 0], z[:, 1], c=QUADRANT_COLOURS[q], s=3)
    row[1].set(xlim=(-3, 3), ylim=(-3, 3), title="prior samples by quadrant")
    row[2].scatter(x[:, 0], x[:, 1], c=QUADRANT_COLOURS[q], s=3)
    row[2].set(xlim=(-4, 4), ylim=(-4, 4),
               title=f"mapped: purity {results[prior]['purity_mean']:.2f}")
    row[3].scatter(data[:, 0], data[:, 1], c=QUADRANT_COLOURS[labels], s=3)
    row[3].set(xlim=(-4, 4), ylim=(-4, 4), title="pinwheel data by arm")
    for ax in row:
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout()
  storage.save_figure(fig, out_path, dpi=90)
  plt.close(fig)
  return out_path


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="runs/pinwheel")
  parser.add_argument("--seeds", type=int, default=3, help="training seeds per prior")
  parser.add_argument("--steps", type=int, default=3000)
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.steps < 1:
    parser.error("--seeds and --steps must be >= 1")
  res = run(args.workdir, tuple(range(args.seeds)), args.steps)
  summary = {p: {k: res[p][k] for k in ("purity_mean", "purity_min", "purity_max",
                                        "distinct_share", "test_nll_mean")}
             for p in priors.PRIORS}
  print(json.dumps(summary, indent=1))
  print(f"wrote {storage.as_path(args.workdir) / 'pinwheel.json'} and pinwheel.png")


if __name__ == "__main__":
  main()
