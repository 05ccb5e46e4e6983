"""A run folder's survey (an earlier run told from one cut off before its first checkpoint)
and moving a run aside byte for byte (the commands meeting old runs:
tests/e2e/test_run_folder.py)."""


import numpy as np
import pytest

from helpers import file_digests
from rgflow_jax.io import storage
from rgflow_jax.run import run_folder


# ---------------------------------------------------------------- the survey alone
def test_the_survey_tells_an_earlier_run_from_one_cut_off_before_its_first_checkpoint(
    tmp_path):
  work = tmp_path / "run"
  work.mkdir()
  assert run_folder.survey(work, 2).evidence == ()  # a new folder
  (work / "config.json").write_text("{}")
  (work / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
  (work / "tensorboard").mkdir()
  (work / "tensorboard" / "events.out").write_text("x")
  (work / "eval").mkdir()
  s = run_folder.survey(work, 2)
  assert s.evidence == () and s.present == ("config.json", "metrics.jsonl", "tensorboard",
                                            "eval")
  (work / "metrics.jsonl").write_text('{"step": 1}\n{"step": 3}\n')  # past the first save
  assert run_folder.survey(work, 2).evidence == ("metrics.jsonl (steps 1 to 3)",)
  (work / "best" / "4").mkdir(parents=True)
  (work / "checkpoints").write_text("")
  s = run_folder.survey(work, 4)
  assert s.evidence == ("checkpoints is a file, not a folder", "best/ (step 4)")
  assert s.wrong_kind == ("checkpoints",) and s.best_steps == (4,)


def test_moving_aside_keeps_every_byte_and_never_replaces(tmp_path):
  work = tmp_path / "run"
  (work / "best" / "6").mkdir(parents=True)
  (work / "best" / "6" / "a").write_bytes(np.arange(100, dtype=np.uint8).tobytes())
  (work / "metrics.jsonl").write_text('{"step": 1}\n')
  before = file_digests(work)
  first = run_folder.move_aside(work, ["best", "metrics.jsonl"])
  assert file_digests(first) == before and not (work / "best").exists()
  (work / "metrics.jsonl").write_text("{}")
  second = run_folder.move_aside(work, ["metrics.jsonl"])  # within the same second
  assert second != first and (first / "metrics.jsonl").read_text() == '{"step": 1}\n'
  with pytest.raises(FileExistsError):
    storage.move(second / "metrics.jsonl", first / "metrics.jsonl")
