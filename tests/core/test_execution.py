"""Execution options: what they accept, where they come from, and that they change how
the model is computed, never (beyond bfloat16 rounding) what."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import perturb
from rgflow_jax import RGFlow
from rgflow_jax.configs import base
from rgflow_jax.core import execution
from rgflow_jax.core.execution import Execution


def test_config_section_and_the_training_default():
  c = ml_collections.ConfigDict({"execution": {"remat": "on", "scan_min_layers": 2,
                                               "matmul_dtype": "float32",
                                               "hand_backward": "auto"}})
  assert Execution.from_config(c.execution) == Execution(remat=True, scan_min_layers=2)
  assert Execution.from_config(c.execution, training=True).hand_backward
  c.execution.hand_backward = "off"
  assert not Execution.from_config(c.execution, training=True).hand_backward
  assert Execution.from_config(None) == Execution()
  # the section's keys about the whole program are read elsewhere, not refused here
  assert Execution.from_config(base.base_config().execution) == Execution()
  # remat: "on" / "off" / "auto" (off until a memory plan says otherwise) or a bool
  for word, flag, choice in (("on", True, True), ("off", False, False), ("auto", False, None)):
    c.execution.remat = word
    assert Execution.from_config(c.execution).remat is flag
    assert execution.remat_choice(c.execution) is choice


@pytest.mark.parametrize("section,match", [
    ({"matmul_dtype": "float16"}, "execution.matmul_dtype must be one of"),
    ({"scan_min_layers": 0}, "execution.scan_min_layers must be an int >= 1"),
    ({"hand_backward": "sometimes"}, "execution.hand_backward must be one of"),
    ({"remat": "yes"}, "execution.remat must be one of \\['auto', 'on', 'off'\\]"),
    ({"rematerialise": True}, "unknown config.execution keys"),
])
def test_bad_values_are_refused_in_one_line(section, match):
  with pytest.raises(ValueError, match=match) as err:
    Execution.from_config(ml_collections.ConfigDict(section))
  assert "\n" not in str(err.value)


def test_for_evaluation_is_float32_and_autodiff():
  ex = Execution(remat=True, matmul_dtype="bfloat16", hand_backward=True)
  assert ex.for_evaluation() == Execution(remat=True)


def test_bfloat16_matmuls_keep_bits_per_dim_within_0_01():
  kw = dict(image_size=32, channels=3, block_size=4, n_layers=1, n_res=1, hidden=8,
            mlp_depth=1)
  flow = RGFlow(**kw)
  params = perturb(flow.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.2)
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.uint8)
  rng = jax.random.PRNGKey(2)
  bpd = jax.jit(flow.bits_per_dim, static_argnums=3)
  a = bpd(params, images, rng, Execution())
  b = bpd(params, images, rng, Execution(matmul_dtype="bfloat16"))
  assert b.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(a - b))) < 0.01
  assert float(jnp.max(jnp.abs(a - b))) > 0  # really a different computation
