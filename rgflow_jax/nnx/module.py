"""RG-Flow (or Real NVP) as a Flax NNX module: the flow's parameters as ``nnx.Param``s,
its methods the project's pure functions on them (no second implementation).

    flow = FlowModule.from_run("runs/msds1-cpu")         # or from_config, from_params
    z, log_det = flow.encode(y)                           # image -> latent
    grads = nnx.grad(lambda m: m.bits_per_dim(x, key).mean())(flow)
    optimizer = nnx.Optimizer(flow, tx, wrt=nnx.Param)    # nnx.jit / split / merge too

The flow itself (a frozen dataclass: its structure) is a static attribute; the
parameters are one nested dict of ``nnx.Param`` (the same keys as the pure functions'
pytree), so ``nnx.state(module, nnx.Param)`` is that pytree of Variables and Orbax
saves it with the usual NNX recipe. :meth:`FlowModule.to_params` gives the pure form
back (a :class:`~rgflow_jax.core.bound.FlowParams`).
"""

from __future__ import annotations

import jax
from flax import nnx

from rgflow_jax.core import bound, registry
from rgflow_jax.core.flow import Flow
from rgflow_jax.paper import receptive
from rgflow_jax.run import run_config, trained


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


class FlowModule(nnx.Module):
  """A flow and its parameters as an NNX module; its methods are the pure functions'."""

  def __init__(self, flow: Flow, params):
    if not isinstance(flow, Flow):
      raise TypeError(f"FlowModule needs a flow (RGFlow or RealNVP) first, got "
                      f"{type(flow).__name__}: use FlowModule.from_config or from_run")
    tree = bound.tree_of(bound.bind(flow, params))
    self.flow = flow
    self.params = nnx.data(jax.tree.map(nnx.Param, tree))

  # ------------------------------------------------------------------ constructors
  @classmethod
  def from_params(cls, flow: Flow, params) -> "FlowModule":
    """The module of ``flow`` holding ``params`` (a pytree or a FlowParams)."""
    return cls(flow, params)

  @classmethod
  def from_config(cls, config, rngs: nnx.Rngs, dtype=None) -> "FlowModule":
    """A freshly initialised module of ``config``'s model: a config name
    (``"msds1:cpu"``), a whole config or its ``model`` section; parameters drawn from
    ``rngs.params()``, in ``config.dtype`` (float32 by default)."""
    if isinstance(config, str):
      from rgflow_jax import configs  # noqa: PLC0415 (ml_collections only when asked)
      config = configs.get_config(config)
    model = config.model if "model" in config else config
    if dtype is None:
      dtype = run_config.param_dtype(config) if "dtype" in config else "float32"
    flow = registry.build(model)
    return cls(flow, flow.init(rngs.params(), dtype))

  @classmethod
  def from_run(cls, workdir, checkpoint="best") -> "FlowModule":
    """The module of a trained run's best (or ``latest``, or step ``checkpoint``)
    checkpoint (:func:`rgflow_jax.load`)."""
    run = trained.load(workdir, checkpoint)
    return cls(run.flow, run.params)

  def to_params(self) -> bound.FlowParams:
    """The parameters as the pure functions take them, bound to the flow."""
    return bound.FlowParams(self.flow, self.tree())

  def tree(self):
    """The parameters as a plain pytree of arrays."""
    return jax.tree.map(lambda v: v[...], self.params, is_leaf=_is_variable)

  # ------------------------------------------------------------------ the flow
  def encode(self, y, execution=None):
    """(z, log|det|) of flow-space images y (B, L, L, C): the RG direction."""
    return self.flow.encode(self.tree(), y, execution)

  def decode(self, z, execution=None):
    """(y, log|det|) of latents z (B, L, L, C): generation."""
    return self.flow.decode(self.tree(), z, execution)

  def log_prob(self, y, execution=None):
    """Per-image log-density of flow-space images y (B, L, L, C)."""
    return self.flow.log_prob(self.tree(), y, execution)

  def bits_per_dim(self, images_uint8, rng, execution=None):
    """Per-image bits per dimension of uint8 images (one dequantisation draw)."""
    return self.flow.bits_per_dim(self.tree(), images_uint8, rng, execution)

  def sample(self, rng, n: int, temperature=1.0, execution=None):
    """``n`` images in [0, 1] at ``temperature`` (one, or one per level)."""
    return self.flow.sample(self.tree(), rng, n, temperature, execution)

  def receptive_field(self, level: int, idx, rng=None, n_samples: int = 16,
                      temperature=1.0):
    """(L, L) receptive field of latent ``idx`` of ``level`` (RG-Flow; paper eq. 14):
    :func:`rgflow_jax.receptive_field`."""
    return receptive.receptive_field(self.flow, self.tree(), level, idx, rng, n_samples,
                                     temperature)
