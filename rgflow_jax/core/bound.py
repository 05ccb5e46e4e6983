"""Parameters that carry their flow: the functional API of the package.

A :class:`FlowParams` is a pytree whose leaves are a flow's parameters and whose
static metadata is the flow itself (an :class:`~rgflow_jax.core.rgflow.RGFlow` or
:class:`~rgflow_jax.core.realnvp.RealNVP`, frozen and hashable). The functions here
take it first, so that ``jax.jit``, ``jax.vmap`` and ``jax.grad`` apply to them as
they are, with nothing closed over::

    params = rgflow_jax.load("runs/msds1-cpu").params     # or bind(flow, flow.init(rng))
    z, log_det = jax.jit(rgflow_jax.encode)(params, y)    # image -> latent (RG direction)
    y, log_det = rgflow_jax.decode(params, z)             # latent -> image (generation)
    images = rgflow_jax.sample(params, rng, 16)           # in [0, 1]

The flow's own methods, params as a plain pytree second (``flow.encode(params, y)``),
are the same functions; either form accepts either kind of params.
"""

from __future__ import annotations

import dataclasses

import jax

from rgflow_jax.core.flow import Flow


@dataclasses.dataclass(frozen=True)
class FlowParams:
  """A flow's parameter pytree (``tree``) with the flow as static metadata."""

  flow: Flow
  tree: dict

  def __post_init__(self):
    if not isinstance(self.flow, Flow):
      raise TypeError(f"FlowParams needs a flow (RGFlow or RealNVP) first, got "
                      f"{type(self.flow).__name__}")

  @property
  def num_params(self) -> int:
    """The number of parameters (entries of every array)."""
    return self.flow.num_params(self.tree)


jax.tree_util.register_dataclass(FlowParams, data_fields=["tree"], meta_fields=["flow"])


def bind(flow: Flow, params) -> FlowParams:
  """``params`` (a plain pytree, or already a FlowParams of ``flow``) bound to ``flow``."""
  if isinstance(params, FlowParams):
    if params.flow != flow:
      raise ValueError("these params belong to another flow: pass them as they are")
    return params
  return FlowParams(flow, params)


def unbind(params, caller: str) -> tuple[Flow, dict]:
  """(flow, plain pytree) of a FlowParams; anything else is a one-line TypeError that
  names ``caller`` and the two forms it accepts."""
  if isinstance(params, FlowParams):
    return params.flow, params.tree
  got = "a flow" if isinstance(params, Flow) else f"a {type(params).__name__}"
  raise TypeError(
      f"{caller}(params, ...) needs params that carry their flow, got {got}: use "
      f"rgflow_jax.load(workdir).params or rgflow_jax.bind(flow, params), or call "
      f"{caller}(flow, params, ...)")


def tree_of(params):
  """The plain pytree of ``params``, bound or not (for the flow's own methods)."""
  return params.tree if isinstance(params, FlowParams) else params


def encode(params: FlowParams, y, execution=None):
  """(z, log|det|) of flow-space images y (B, L, L, C): the RG direction."""
  flow, tree = unbind(params, "encode")
  return flow.encode(tree, y, execution)


def decode(params: FlowParams, z, execution=None):
  """(y, log|det|) of latents z (B, L, L, C): generation."""
  flow, tree = unbind(params, "decode")
  return flow.decode(tree, z, execution)


def log_prob(params: FlowParams, y, execution=None):
  """Per-image log-density of flow-space images y (B, L, L, C)."""
  flow, tree = unbind(params, "log_prob")
  return flow.log_prob(tree, y, execution)


def bits_per_dim(params: FlowParams, images_uint8, rng, execution=None):
  """Per-image bits per dimension of uint8 images (one dequantisation draw from rng)."""
  flow, tree = unbind(params, "bits_per_dim")
  return flow.bits_per_dim(tree, images_uint8, rng, execution)


def sample(params: FlowParams, rng, n: int, temperature=1.0, execution=None):
  """``n`` images in [0, 1] (n, L, L, C) at the given temperature(s), one per level
  or one for all. ``n`` fixes a shape: under ``jax.jit`` make it static."""
  flow, tree = unbind(params, "sample")
  return flow.sample(tree, rng, n, temperature, execution)
