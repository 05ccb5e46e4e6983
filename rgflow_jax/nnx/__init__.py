"""RG-Flow for Flax NNX users: the flow as an ``nnx.Module`` (docs/flax.md). Needs the
``[flax]`` extra; ``import rgflow_jax`` does not import Flax, this package does.

    from rgflow_jax.nnx import FlowModule
"""

from rgflow_jax.nnx.module import FlowModule

__all__ = ["FlowModule"]
