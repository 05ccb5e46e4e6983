"""A run's saved config: malformed files in one line, earlier layouts upgraded key by key
(the flat layout, runs saved before the layer order and execution keys)."""

import json

import ml_collections
import pytest

from helpers import load_config, smoke_config
from rgflow_jax.configs import base
from rgflow_jax.core import execution
from rgflow_jax.core.execution import Execution
from rgflow_jax.io import metrics, storage
from rgflow_jax.run import run_config, training


@pytest.mark.parametrize("text,words", [
    ("[1, 2]", "not a JSON object but a list"),
    ('{"model": [8]}', "\"model\" is [8], not a JSON object"),
    ('{"model": {"name": "glow"}}', "\"model.name\" is 'glow', not one of"),
    ('{"num_steps": "10"}', "\"num_steps\" is '10', not an integer"),
    ('{"model": ', "not valid JSON"),
])
def test_a_malformed_saved_config_is_one_line_naming_it(tmp_path, text, words):
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(storage.RunFileError) as err:
    run_config.read_saved_config(tmp_path)
  assert str(err.value).startswith(f"{tmp_path / 'config.json'}: ") and words in str(err.value)
  assert "\n" not in str(err.value)


def test_a_config_of_the_flat_layout_upgrades_to_today_key_by_key(tmp_path):
  """Every key the flat layout had (base.MOVED_KEYS), put back where it was with a value
  of its own, lands in its section with that value; data.channels is dropped."""
  now = json.loads(smoke_config(tmp_path).to_json())
  flat = json.loads(json.dumps(now))
  for i, (old, new) in enumerate(base.MOVED_KEYS.items()):
    *parents, leaf = new.split(".")
    node, want = flat, now
    for part in parents:
      node, want = node[part], want[part]
    value = node.pop(leaf)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      want[leaf] = value = value + i + 1  # each key's own value
    section, _, name = old.rpartition(".")
    (flat[section] if section else flat)[name] = value
  flat["data"]["channels"] = 3
  for section in ("train", "hosts"):  # the flat layout had neither
    assert not metrics.flatten(flat.pop(section)), section  # (no key left in them)
  assert run_config.upgrade_saved_config(flat) == now


def test_a_run_saved_before_the_layer_order_and_execution_keys_resumes_as_it_was(tmp_path):
  saved = json.loads(smoke_config(tmp_path).to_json())
  del saved["model"]["layer_order"]  # what config.json held before the option existed
  # ... and when the execution options were model keys:
  ex = saved.pop("execution")
  saved["model"].update({k: ex[k] for k in execution.FIELDS}, matmul_dtype="bfloat16",
                        remat=True)
  saved.update({k: ex[k] for k in execution.PROGRAM_KEYS})  # top-level keys then
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
  run_config.check_resume_compatible(tmp_path / "run", smoke_config(tmp_path))
  old = ml_collections.ConfigDict(run_config.read_saved_config(tmp_path / "run"))
  assert run_config.build_model(old) == run_config.build_model(smoke_config(tmp_path))
  assert Execution.from_config(old.execution) == Execution(remat=True, matmul_dtype="bfloat16")
  assert "execution" not in saved and "remat" in saved["model"]  # the input is unchanged
  rnvp = json.loads(load_config("msds1", "smoke,realnvp").to_json())
  del rnvp["train"]["checkpoint"]["lock_lease_s"]  # a key a run may predate: the default
  up = run_config.upgrade_saved_config(rnvp)
  assert "layer_order" not in up["model"] and up["train"]["checkpoint"]["lock_lease_s"] == 300
  authors = smoke_config(tmp_path, **{"model.layer_order": "authors"})
  with pytest.raises(training.TrainingError, match="different config.model.layer_order"):
    run_config.check_resume_compatible(tmp_path / "run", authors)
