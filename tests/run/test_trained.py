"""rgflow_jax.load's refusals, each one line saying what to do, before any work: no run
folder, a folder that is not a run, a run without checkpoints, an unknown checkpoint.
(Loading a trained run: tests/e2e/test_checkpoint.py.)"""

import pytest

import rgflow_jax
from helpers import smoke_config
from rgflow_jax.run import trained


def test_what_is_not_a_trained_run_is_refused_in_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="no run folder at"):
    rgflow_jax.load(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="has no config.json"):
    rgflow_jax.load(tmp_path / "empty")
  run = tmp_path / "untrained"
  run.mkdir()
  config = smoke_config(tmp_path)
  (run / "config.json").write_text(config.to_json())
  with pytest.raises(FileNotFoundError, match=r"no checkpoints in .*untrained: train first "
                     r"\(rgflow-train --config \.\.\. --workdir"):
    rgflow_jax.load(run)
  with pytest.raises(ValueError, match="checkpoint must be 'best', 'latest' or a step"):
    trained.load_params(config, run, "newest")
