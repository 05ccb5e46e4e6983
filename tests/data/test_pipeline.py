"""The input pipeline: exact continuation after a restore, epochs, batches independent of
the process count, evaluation shares, unknown data sets refused."""

import numpy as np
import pytest

from helpers import data_section
from rgflow_jax import data


def _source(n=37):
  imgs = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
  imgs[:, :, 0] = 255  # a left column marks horizontal flips
  return data.ArraySource(imgs)


def test_restored_pipeline_continues_exactly():
  source = _source()
  full = data.train_batches(source, 5, seed=11, flip=True)
  uninterrupted = [next(full) for _ in range(20)]
  first = data.train_batches(source, 5, seed=11, flip=True)
  for _ in range(7):
    next(first)
  state = first.get_state()
  resumed = data.train_batches(source, 5, seed=11, flip=True)
  resumed.set_state(state)
  for want in uninterrupted[7:]:
    np.testing.assert_array_equal(next(resumed), want)


def test_epochs_cover_the_data_and_reshuffle():
  source = _source(20)
  it = data.train_batches(source, 5, seed=0)
  epochs = [np.concatenate([next(it)[:, 1, 1, 0] for _ in range(4)]) for _ in range(2)]
  for e in epochs:
    assert sorted(e.tolist()) == list(range(20))
  assert (epochs[0] != epochs[1]).any()
  flips = np.concatenate([next(data.train_batches(source, 20, seed=s, flip=True))[:, 0, 0, 0]
                          for s in range(5)])
  assert 0.2 < (flips != 255).mean() < 0.8  # about half are flipped (marker moved)


def test_the_global_batches_do_not_depend_on_the_process_count():
  """Process p's batches are rows p*b.. of one process's global batches, step after
  step and across epochs (40 images, global batches of 16), flips included."""
  source = _source(40)
  whole = data.train_batches(source, 16, seed=3, flip=True)
  parts = [data.train_batches(source, 4, seed=3, flip=True, process_index=p, process_count=4)
           for p in range(4)]
  for _ in range(6):
    np.testing.assert_array_equal(next(whole), np.concatenate([next(it) for it in parts]))


def test_eval_batches_cover_everything_once_in_equal_padded_shares():
  # One process: global batches of 6, the last padded.
  batches = list(data.eval_batches(_source(23), 6))
  assert [len(b) for b, _ in batches] == [6, 6, 6, 6]
  assert [float(w.sum()) for _, w in batches] == [6, 6, 6, 5]
  # Three processes: the same global batches, cut into rows of 2; the last one's
  # five images are on processes 0, 1 and 2 as 2, 2 and 1.
  shares = [list(data.eval_batches(_source(23), 6, None, p, 3)) for p in range(3)]
  for i, (images, weights) in enumerate(batches):
    np.testing.assert_array_equal(np.concatenate([s[i][0] for s in shares]), images)
    np.testing.assert_array_equal(np.concatenate([s[i][1] for s in shares]), weights)
  assert [float(s[-1][1].sum()) for s in shares] == [2, 2, 1]
  real = np.concatenate([b[w == 1] for b, w in batches])
  assert real[:, 1, 1, 0].tolist() == list(range(23))


def test_bad_data_config():
  with pytest.raises(data.DataError, match="must be one of"):
    data.make_source(data_section(name="imagenet"), "train")
  with pytest.raises(data.DataError, match="fewer than one batch"):
    data.train_batches(_source(3), 8, seed=0)
