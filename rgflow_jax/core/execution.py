"""How a flow's arithmetic is arranged: never what it computes.

An :class:`Execution` is passed to ``encode`` / ``decode`` (and the densities built on
them) beside the params; the architecture dataclasses (``RGFlow``, ``RealNVP``) do
not hold it. Every option gives the same function up to float rounding, bfloat16
matmul inputs excepted (docs/accelerators.md):

- ``remat``: recompute each RNVP layer (Real NVP: each coupling) in the backward pass:
  less memory, about a third more time. In a config "on", "off" or "auto" (the
  default): on where XLA's plan for the training step exceeds the accelerator's memory
  (:func:`rgflow_jax.run.jit_steps.compile_loop_step`).
- ``scan_min_layers``: a loop of an RNVP block with at least this many iterations (its
  RNVP layers; a conditioner's residual blocks) runs as one ``lax.scan`` (compile time
  flat in their number); shorter ones are unrolled, which XLA:CPU runs faster.
  1: always scan; a large number: never.
- ``matmul_dtype``: "bfloat16" gives the conditioners' matrix products bfloat16 inputs
  (float32 accumulation, log-dets and loss in float32).
- ``hand_backward``: encode's conditioners get the hand-written backward pass
  (:func:`rgflow_jax.core.coupling_fast.apply_blocks`): faster reverse-mode gradients, but
  no forward-mode derivatives through encode. The training step turns it on.

In a config these are ``config.execution.*``; they may change when a run resumes.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

MATMUL_DTYPES = ("float32", "bfloat16")
# config.execution.hand_backward: "auto" is on in the training step, off elsewhere.
HAND_BACKWARD = {"auto": None, "on": True, "off": False}
# config.execution.remat: "auto" is on where the training step would not fit in the
# accelerator's memory without it (XLA's plan says so: rgflow_jax.run.jit_steps).
REMAT = {"auto": None, "on": True, "off": False}


def _choice(values: dict, key: str, table: dict, default: str):
  """A config.execution option that is one of ``table``'s words (or a bool)."""
  value = values.pop(key, default)
  if isinstance(value, str):
    if value not in table:
      raise ValueError(f"config.execution.{key} must be one of {list(table)}, got {value!r}")
    return table[value]
  return value


def remat_choice(section):
  """``config.execution.remat`` (``section`` is ``config.execution``) as True, False, or
  None for "auto"."""
  return _choice(dict(section or {}), "remat", REMAT, "auto")


@dataclasses.dataclass(frozen=True)
class Execution:
  """Execution options of a flow; see the module docstring."""

  remat: bool = False
  scan_min_layers: int = 5
  matmul_dtype: str = "float32"
  hand_backward: bool = False

  def __post_init__(self):
    if not isinstance(self.scan_min_layers, (int, np.integer)) or self.scan_min_layers < 1:
      raise ValueError(f"execution.scan_min_layers must be an int >= 1, "
                       f"got {self.scan_min_layers!r}")
    if self.matmul_dtype not in MATMUL_DTYPES:
      raise ValueError(f"execution.matmul_dtype must be one of {MATMUL_DTYPES}, "
                       f"got {self.matmul_dtype!r}")
    for name in ("remat", "hand_backward"):
      if not isinstance(getattr(self, name), (bool, np.bool_)):
        raise ValueError(f"execution.{name} must be true or false, "
                         f"got {getattr(self, name)!r}")

  @property
  def matmul_jnp_dtype(self):
    """The conditioners' matmul input dtype; None: the activations' own."""
    return None if self.matmul_dtype == "float32" else jnp.bfloat16

  @classmethod
  def from_config(cls, section, training: bool = False) -> "Execution":
    """From ``config.execution`` (``section``; None or empty: the defaults); its keys
    for the compiled program as a whole (:data:`PROGRAM_KEYS`) are read by the training
    step and the compilation cache, not here. ``training``: the step's options
    (hand_backward "auto" on)."""
    values = {k: v for k, v in dict(section or {}).items() if k not in PROGRAM_KEYS}
    unknown = set(values) - set(FIELDS)
    if unknown:
      raise ValueError(f"unknown config.execution keys {sorted(unknown)}; "
                       f"valid keys: {list(FIELDS) + list(PROGRAM_KEYS)}")
    hand = _choice(values, "hand_backward", HAND_BACKWARD, "auto")
    remat = _choice(values, "remat", REMAT, "auto")
    return cls(hand_backward=training if hand is None else hand, remat=bool(remat),
               **values)

  def for_evaluation(self) -> "Execution":
    """The same, with float32 matmul inputs and autodiff's backward: test bits/dim,
    samples and round trips run at full precision whatever the training step uses."""
    return dataclasses.replace(self, matmul_dtype="float32", hand_backward=False)


FIELDS = tuple(f.name for f in dataclasses.fields(Execution))
# config.execution's keys about the compiled program, not the flow's arithmetic.
PROGRAM_KEYS = ("matmul_precision", "gpu_command_buffers", "compilation_cache_dir")
DEFAULT = Execution()
TRAINING = Execution(hand_backward=True)  # the training step's, when not configured
