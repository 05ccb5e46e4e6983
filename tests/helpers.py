"""Helpers shared by tests and by the scripts tests run in subprocesses."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from rgflow_jax import training


def step_gradient(flow, params, images, mesh) -> dict:
  """The loss and the gradient that the real training step computes (jitted, sharded,
  hand-written backward where the model has it): one step of SGD with learning rate 1
  moves the parameters by exactly minus the gradient."""
  sgd = optax.sgd(1.0)
  params = jax.tree.map(jnp.copy, params)  # the step donates its state: the caller keeps its own
  state = {"params": params, "opt_state": sgd.init(params), "step": jnp.zeros((), jnp.int32),
           "rng": jax.random.PRNGKey(1)}
  step = training.make_train_step(flow, sgd, mesh)
  batch = training.global_batch(np.asarray(images), mesh)
  jaxpr = str(jax.make_jaxpr(step)(state, batch))
  before = np.asarray(jax.flatten_util.ravel_pytree(params)[0], np.float64)
  new, metrics = step(state, batch)  # the state is donated: read it before
  after = np.asarray(jax.flatten_util.ravel_pytree(new["params"])[0], np.float64)
  return {"loss": float(metrics["train_bpd"]), "grad": (before - after).tolist(),
          "hand_backward": "optimization_barrier" in jaxpr}
