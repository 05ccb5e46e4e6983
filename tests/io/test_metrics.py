"""Run metrics: metrics.jsonl and the TensorBoard log written beside it."""

import sys

import numpy as np
import pytest

from rgflow_jax.io import metrics, storage


def _events(logdir):
  from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0,
                                                                      "images": 0})
  acc.Reload()
  return acc


def test_a_resumed_log_replaces_what_the_killed_run_wrote_after_its_checkpoint(tmp_path):
  first = metrics.MetricsLog(tmp_path, resume_step=None)
  for step in range(1, 7):
    first.write({"step": step, "minutes": step / 10, "train_bpd": 10.0 - step})
  first.image("samples", np.zeros((8, 8, 1), np.uint8), 6)
  first.close()
  resumed = metrics.MetricsLog(tmp_path, resume_step=4)  # the checkpoint was at step 4
  for step in (5, 6):
    resumed.write({"step": step, "minutes": step / 10, "train_bpd": 100.0 + step})
  resumed.close()
  rows = metrics.read_metrics(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[-1]["train_bpd"] == 106.0
  tb = _events(tmp_path / "tensorboard")
  bpd = [(e.step, e.value) for e in tb.Scalars("train/bpd")]
  assert bpd == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 105.0), (6, 106.0)]
  assert tb.Images("samples") == []  # logged at step 6 by the run that was cut short


def test_without_tensorboardx_one_line_says_so_and_metrics_jsonl_goes_on(tmp_path, monkeypatch,
                                                                          capsys):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
  log = metrics.MetricsLog(tmp_path, resume_step=None)
  log.write({"step": 1, "train_bpd": 3.0})
  log.image("samples", np.zeros((4, 4, 3), np.uint8), 1)
  log.close()
  assert capsys.readouterr().err.strip() == (
      "note: no TensorBoard logs (tensorboardX is not installed: pip install tensorboardX); "
      "metrics.jsonl has every number")
  assert metrics.read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "train_bpd": 3.0}]
  assert not (tmp_path / "tensorboard").exists()


def test_flatten_names_nested_keys_with_dots():
  assert metrics.flatten({"a": 1, "m": {"h": (8,), "d": {"x": "y"}}}) == \
      {"a": 1, "m.h": (8,), "m.d.x": "y"}


@pytest.mark.parametrize("shape", [(6, 5, 3), (6, 5, 1)])
def test_images_are_logged_as_rgb(tmp_path, shape):
  tb = metrics.TensorBoardLog(tmp_path)
  tb.image("grid", np.full(shape, 200, np.uint8), 3)
  tb.close()
  (image,) = _events(tmp_path).Images("grid")
  assert (image.step, image.width, image.height) == (3, 5, 6)


@pytest.mark.parametrize("line,words", [
    ('{"minutes": 1.0}', 'line 2: no "step" (an integer >= 0)'),
    ("[3]", "line 2: not a JSON object but a list"),
    ('{"step": "3"}', "line 2: \"step\" is '3', not an integer >= 0"),
    ('{"step": -1}', "line 2: \"step\" is -1, not an integer >= 0"),
    ('{"step": true}', "line 2: \"step\" is True, not an integer >= 0"),
    ('{"step": 3, "test_bpd": "abc"}', "line 2: \"test_bpd\" is 'abc', not a number"),
    ('{"step": 3, "train_bpd": ', "line 2: not valid JSON"),
])
def test_a_malformed_row_is_one_line_naming_the_file_the_line_and_the_key(tmp_path, line,
                                                                         words):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "train_bpd": NaN, "test_bpd": null}\n' + line + "\n")
  with pytest.raises(storage.RunFileError) as err:
    metrics.read_metrics(path)
  assert str(err.value).startswith(f"{path}, line 2: ") and words in str(err.value)
  assert "\n" not in str(err.value)
  path.write_text('{"step": 1, "train_bpd": NaN, "test_bpd": null}\n')  # NaN is a number
  assert metrics.read_metrics(path)[0]["step"] == 1
