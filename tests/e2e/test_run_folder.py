"""A run folder met again: earlier runs without a checkpoint refused, resumed or moved
aside; malformed and impossible run files in one line, nothing changed."""

import json
import os
import shutil
import subprocess
import sys

import chex
import jax.numpy as jnp
import pytest

from helpers import ROOT, file_digests, run_eval, smoke_config
from rgflow_jax.io import checkpoint, storage
from rgflow_jax.run import evaluation, jit_steps, run_config, run_folder, training

STEPS = dict(ckpt_every=2, eval_every=3, log_every=2, sample_every=3)


def _config(base, steps):
  return smoke_config(base, num_steps=steps, **STEPS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A run of 6 steps (checkpoints 2, 3, 4, 6; best/ 6), and the same run to 8."""
  base = tmp_path_factory.mktemp("history")
  training.train_and_evaluate(_config(base, 6), base / "at6")
  training.train_and_evaluate(_config(base, 8), base / "to8")
  return base


def _flip(step_folder):
  """Flip bytes in the middle of every file of a checkpoint's state."""
  for f in (step_folder / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 64:
      raw = bytearray(f.read_bytes())
      mid = len(raw) // 2
      raw[mid:mid + 32] = bytes(b ^ 0xFF for b in raw[mid:mid + 32])
      f.write_bytes(bytes(raw))


def _all_damaged(work):
  for step in (work / "checkpoints").iterdir():
    _flip(step)


def _deleted(work):
  shutil.rmtree(work / "checkpoints")


def _a_file(work):
  shutil.rmtree(work / "checkpoints")
  (work / "checkpoints").write_text("not a folder")


LOSSES = {"all_damaged": _all_damaged, "deleted": _deleted, "a_file": _a_file}


def _params(workdir, c, best=False):
  flow = run_config.build_model(c)
  ckpts = checkpoint.Checkpoints(workdir, read_only=True)
  state, meta = ckpts.restore(jit_steps.init_state(flow, c, jnp.float32), best=best)
  ckpts.close()
  return state["params"], meta


@pytest.mark.campaign
@pytest.mark.parametrize("loss", LOSSES)
def test_an_earlier_run_without_a_checkpoint_is_refused_then_resumed_or_moved_aside(
    runs, tmp_path, loss):
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  LOSSES[loss](work)
  before = file_digests(work)
  c = _config(runs, 8)
  for _ in range(2):  # the same command twice: refused alike, nothing changed
    with pytest.raises(training.TrainingError) as err:
      training.train_and_evaluate(c, work)
    message = str(err.value)
    assert "\n" not in message and "holds an earlier run" in message, message
    assert "nothing was changed" in message and "best/ step 6" in message
    assert "--resume_from_best" in message and "--start_over" in message
    assert file_digests(work) == before

  # Resume from best/ 6: the run goes on as if nothing was lost (bitwise), and what
  # was damaged is kept, byte for byte, in damaged/.
  resumed = tmp_path / "resumed"
  shutil.copytree(work, resumed)
  summary = training.train_and_evaluate(c, resumed, earlier_run="resume_from_best")
  assert (summary["step"], summary["steps_this_run"]) == (8, 2)
  got, meta = _params(resumed, c)
  want, want_meta = _params(runs / "to8", c)
  chex.assert_trees_all_equal(want, got)
  assert meta["data_state"] == want_meta["data_state"]
  aside = {p.name: p for p in (resumed / "damaged").iterdir()} if loss != "deleted" else {}
  if loss == "all_damaged":
    for p in aside.values():  # checkpoints-<step>-<date>-<time>
      step = p.name.split("-")[1]
      moved = file_digests(p)
      assert moved == {k.split("/", 2)[2]: v for k, v in before.items()
                       if k.startswith(f"checkpoints/{step}/")}
    assert sorted(p.name.split("-")[1] for p in aside.values()) == \
        sorted({k.split("/")[1] for k in before if k.startswith("checkpoints/")})
  if loss == "a_file":
    (moved,) = aside.values()
    assert moved.read_text() == "not a folder"
  rows = [json.loads(l) for l in (resumed / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train_bpd" in r] == [2, 4, 6, 8]

  # Start over: every earlier file, byte for byte, in earlier-runs/<date>-<time>/.
  fresh = tmp_path / "fresh"
  shutil.copytree(work, fresh)
  summary = training.train_and_evaluate(c, fresh, earlier_run="start_over")
  assert (summary["step"], summary["steps_this_run"]) == (8, 8)
  (earlier,) = (fresh / run_folder.EARLIER_RUNS).iterdir()
  assert file_digests(earlier) == before
  got, _ = _params(fresh, c)
  chex.assert_trees_all_equal(want, got)  # a new run of the same config


def test_the_choices_change_nothing_where_a_checkpoint_can_be_resumed(runs, tmp_path, capsys):
  """The flags answer the refusal; a scheduler that restarts a command with one must not
  move a healthy run aside: it resumes from its newest intact checkpoint."""
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  c = _config(runs, 8)
  summary = training.train_and_evaluate(c, work, earlier_run="start_over")
  assert summary["steps_this_run"] == 2 and not (work / run_folder.EARLIER_RUNS).exists()
  assert "--start_over: nothing to do" in capsys.readouterr().err
  chex.assert_trees_all_equal(_params(runs / "to8", c)[0], _params(work, c)[0])


def test_a_run_cut_off_before_its_first_checkpoint_restarts_without_asking(runs, tmp_path):
  """What a run leaves before its first checkpoint (config, the first rows, event files,
  samples) is written again by a restart: no earlier run to keep."""
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  shutil.rmtree(work / "checkpoints")
  shutil.rmtree(work / "best")
  rows = (work / "metrics.jsonl").read_text().splitlines()
  (work / "metrics.jsonl").write_text(rows[0] + "\n")  # step 2, the first checkpoint's
  summary = training.train_and_evaluate(_config(runs, 6), work)
  assert summary["steps_this_run"] == 6


# ------------------------------------------------------------ damaged run files
def _edit_meta(work, folder, **changes):
  path = work / "checkpoints" / str(folder) / "meta" / "metadata"
  meta = json.loads(path.read_text())
  for key, value in changes.items():
    if key == "next_index":
      meta["data_state"]["next_index"] = value
    else:
      meta[key] = value
  path.write_text(json.dumps(meta))


def _edit_metrics(work, line):
  with (work / "metrics.jsonl").open("a") as f:
    f.write(line + "\n")


MALFORMED = {
    "config.json a list": (lambda w: (w / "config.json").write_text("[1, 2]"),
                           "config.json: not a JSON object but a list"),
    "a row without step": (lambda w: _edit_metrics(w, '{"minutes": 1.0}'),
                           'metrics.jsonl, line 6: no "step"'),
    "a row not an object": (lambda w: _edit_metrics(w, "[7]"),
                            "metrics.jsonl, line 6: not a JSON object but a list"),
    "a string step": (lambda w: _edit_metrics(w, '{"step": "7"}'),
                      "metrics.jsonl, line 6: \"step\" is '7', not an integer >= 0"),
    "a text test_bpd": (lambda w: _edit_metrics(w, '{"step": 7, "test_bpd": "abc"}'),
                        "metrics.jsonl, line 6: \"test_bpd\" is 'abc', not a number"),
    "the data position": (lambda w: _edit_meta(w, 6, next_index=-5),
                          'checkpoints/6/meta/metadata: "data_state" is not a position of '
                          "this run's data (IndexError"),
    "a text skipped count": (lambda w: _edit_meta(w, 6, skipped_steps="2"),
                             "checkpoints/6/meta/metadata: \"skipped_steps\" is '2', not an "
                             "integer"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_run_file_is_one_line_naming_it_and_nothing_changes(runs, tmp_path, case):
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  damage, words = MALFORMED[case]
  damage(work)
  before = file_digests(work)
  with pytest.raises(ValueError) as err:
    training.train_and_evaluate(_config(runs, 8), work)
  assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
  assert isinstance(err.value, storage.RunFileError)
  assert file_digests(work) == before
  if case in ("a text test_bpd", "a row without step"):  # eval's curve reads it too
    with pytest.raises(storage.RunFileError, match="metrics.jsonl, line 6"):
      run_eval(_config(runs, 8), work, "curve")


@pytest.mark.parametrize("changes,words", [
    ({"best_test_bpd": -1.0}, "records a best test bits/dim of -1.0"),
    ({"best_test_bpd": float("inf")}, "records a best test bits/dim of inf"),
    ({"step": 5}, "records step 5 in the folder of step 6"),
])
def test_metadata_that_cannot_be_true_is_damage(runs, tmp_path, changes, words, caplog):
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  _edit_meta(work, 6, **changes)
  with caplog.at_level("WARNING", logger="rgflow_jax.io.checkpoint"):
    summary = training.train_and_evaluate(_config(runs, 8), work)
  assert summary["steps_this_run"] == 4  # from step 4, the newest intact checkpoint
  assert words in caplog.text and "set aside" in caplog.text
  (aside,) = (work / "damaged").iterdir()
  assert aside.name.startswith("checkpoints-6-")
  # The run updates best/ again once it is beaten (a -1 would have frozen it).
  c = _config(runs, 8)
  chex.assert_trees_all_equal(_params(runs / "to8", c)[0], _params(work, c)[0])


# ------------------------------------------------------------------- evaluation
def test_evaluation_says_which_checkpoint_it_read(runs, tmp_path):
  """A damaged best/: the latest is evaluated, and the summary line and eval.json say
  so; a TensorBoard folder that takes no file costs only the event file."""
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  _flip(work / "best" / "6")
  shutil.rmtree(work / "tensorboard")
  (work / "tensorboard").write_text("not a folder")
  c = _config(runs, 8)
  results = run_eval(c, work, "curve")
  assert results["step"] == 6 and results["checkpoint"] == "latest"
  assert "best/6 cannot be read" in results["checkpoint_fallback"]
  last = evaluation.summary_lines(results)[-1]
  assert last.startswith("eval: step 6 (latest checkpoint, as the best one could not be "
                         "read: "), last
  saved = json.loads((work / "eval" / "eval.json").read_text())
  assert saved["checkpoint"] == "latest" and saved["checkpoint_fallback"]
  assert (work / "eval" / "bpd_curve.png").exists()
  assert (work / "tensorboard").read_text() == "not a folder"
  intact = run_eval(c, runs / "at6", "curve")
  assert (intact["checkpoint"], intact["checkpoint_fallback"]) == ("best", None)


# ---------------------------------------------------------------- the commands
def _train_cmd(work, data_dir, *extra):
  return [sys.executable, str(ROOT / "train.py"), "--config", "msds1:smoke",
          f"--workdir={work}", f"--config.data.location.data_dir={data_dir}", *extra]


def test_the_commands_refuse_in_one_line(runs, tmp_path):
  """rgflow-train over a lost run: exit 1, one line, nothing changed; an unwritable data
  folder: one line (no Orbax thread's traceback after it); a coordinator port out of
  range: exit 2, one line."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  work = tmp_path / "run"
  shutil.copytree(runs / "at6", work)
  _deleted(work)
  before = file_digests(work)
  cases = [(_train_cmd(work, runs / "data"), 1, f"error: {work} holds an earlier run but "
            "no checkpoint to resume"),
           (_train_cmd(tmp_path / "new", "/proc/no/such"), 1, "error: cannot write the "
            "msds1 cache to /proc/no/such"),
           (_train_cmd(tmp_path / "new2", runs / "data", "--config.hosts.distributed=True",
                       "--config.hosts.coordinator_address=127.0.0.1:99999"), 2,
            "error: bad config: config.hosts.coordinator_address: the coordinator port 99999 of "
            "127.0.0.1:99999 is not in 1..65535")]
  for cmd, status, words in cases:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    lines = [l for l in out.stderr.splitlines() if not l.startswith(("I1", "W1"))]
    assert out.returncode == status and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(words), lines
  assert file_digests(work) == before
