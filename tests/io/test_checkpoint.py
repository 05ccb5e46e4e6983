"""Checkpoint metadata: values that cannot be true are damage, malformed files one line
(kills and damaged checkpoints: tests/e2e/test_checkpoint.py)."""

import pytest

from rgflow_jax.io import checkpoint, storage

# -------------------------------------------------------------- metadata checks
GOOD_META = {"step": 6, "skipped_steps": 0, "best_test_bpd": 9.5, "test_bpd": float("nan"),
             "data_state": {"next_index": 6}, "state_sha256": "ab"}


@pytest.mark.parametrize("changes,damage,words", [
    ({"step": 5}, True, "records step 5 in the folder of step 6"),
    ({"best_test_bpd": -1.0}, True, "best test bits/dim of -1.0"),
    ({"best_test_bpd": float("nan")}, True, "best test bits/dim of nan"),
    ({"test_bpd": -0.5}, True, "test bits/dim of -0.5"),
    ({"step": "6"}, False, "\"step\" is '6', not an integer"),
    ({"skipped_steps": -2}, False, "\"skipped_steps\" is -2, not >= 0"),
    ({"best_test_bpd": "9.5"}, False, "\"best_test_bpd\" is '9.5', not a number"),
    ({"data_state": [6]}, False, "\"data_state\" is [6], not a JSON object"),
])
def test_checkpoint_metadata_that_cannot_be_true_is_damage_and_malformed_is_one_line(
    changes, damage, words):
  checkpoint.check_meta(GOOD_META, 6, "run/checkpoints/6/meta/metadata")  # NaN test: fine
  kind = checkpoint.DamagedCheckpoint if damage else storage.RunFileError
  with pytest.raises(kind) as err:
    checkpoint.check_meta(dict(GOOD_META, **changes), 6, "run/checkpoints/6/meta/metadata")
  assert words in str(err.value) and "run/checkpoints/6/meta/metadata" in str(err.value)
  with pytest.raises(storage.RunFileError, match="not a JSON object but a list"):
    checkpoint.check_meta([GOOD_META], 6, "m")
