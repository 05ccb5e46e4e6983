"""Run metrics: ``metrics.jsonl`` always, and TensorBoard event files (tensorboardX;
no TensorFlow) with the same numbers, sample grids and evaluation figures, and the
config as hyperparameters."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time

import jax
import numpy as np

from rgflow_jax.io import progress, storage


def read_metrics(path) -> list[dict]:
  """The rows of a metrics.jsonl, each checked: a JSON object with an integer ``step``
  >= 0 and numbers (or null) for every other key. A row that is not is a one-line
  :class:`~rgflow_jax.io.storage.RunFileError` naming the file, the line and the key."""
  path = storage.as_path(path)
  if not path.exists():
    return []
  rows = []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise storage.RunFileError(f"{path}, line {n}: not valid JSON ({e}); fix or delete "
                                 "that line") from None
    problem = _row_problem(row)
    if problem:
      raise storage.RunFileError(f"{path}, line {n}: {problem}; fix or delete that line")
    rows.append(row)
  return rows


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _row_problem(row) -> str | None:
  """What makes ``row`` not a metrics row, in words (None if it is one)."""
  if not isinstance(row, dict):
    return f"not a JSON object but a {type(row).__name__}"
  step = row.get("step")
  if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
    return "no \"step\" (an integer >= 0)" if step is None else \
        f"\"step\" is {step!r}, not an integer >= 0"
  for key, value in row.items():
    if value is not None and not _is_number(value):
      return f"\"{key}\" is {value!r}, not a number"
  return None


class TensorBoardLog:
  """A run's TensorBoard events in ``<workdir>/tensorboard``, through tensorboardX (no
  TensorFlow): scalars, images (sample grids, evaluation figures) and the config as
  hyperparameters. ``TensorBoardLog.create`` returns None, after one line on stderr,
  where tensorboardX is not installed.

  Locally events are written straight into the logdir. An object store cannot append:
  there they are written to a local temporary folder and each event file is uploaded
  whole (atomically) at every :meth:`flush`. ``purge_step`` (the restored step on
  resume) makes TensorBoard drop the events a killed run wrote after its checkpoint.
  """

  def __init__(self, logdir, purge_step: int | None = None):
    from tensorboardX import SummaryWriter  # noqa: PLC0415
    self.logdir = storage.as_path(logdir)
    self.remote = storage.is_remote(self.logdir)
    if self.remote:
      self._local = tempfile.mkdtemp(prefix="rgflow_tb_")
    else:
      self.logdir.mkdir(parents=True, exist_ok=True)
      self._local = os.fspath(self.logdir)
    # tensorboardX names a file by the second it was opened: a restart within that
    # second would overwrite the killed run's file. The suffix keeps each one apart,
    # in the order they were written.
    self.writer = SummaryWriter(self._local, purge_step=purge_step, flush_secs=30,
                                filename_suffix=f".{time.time_ns()}.{os.getpid()}")

  @classmethod
  def create(cls, logdir, purge_step: int | None = None):
    """The log, or None after one line on stderr where tensorboardX is missing or the
    folder takes no file (the run's other outputs do not depend on it)."""
    try:
      return cls(logdir, purge_step)
    except ImportError:
      progress.say("note: no TensorBoard logs (tensorboardX is not installed: "
                   "pip install tensorboardX); metrics.jsonl has every number")
    except OSError as e:
      progress.say(f"warning: no TensorBoard events: cannot write to {logdir} "
                   f"({storage.error_line(e)}); every other output is written")
    return None

  def scalars(self, step: int, values: dict):
    for tag, value in values.items():
      self.writer.add_scalar(tag, float(value), int(step))

  def image(self, tag: str, image, step: int):
    """A uint8 (H, W, C) array, or a PNG/GIF file's bytes (its first frame)."""
    if isinstance(image, bytes):
      from PIL import Image  # noqa: PLC0415
      image = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    image = np.asarray(image)
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    self.writer.add_image(tag, image, int(step), dataformats="HWC")

  def hparams(self, config: dict, metrics: tuple[str, ...]):
    """The config, flattened, in TensorBoard's HParams tab, against ``metrics`` (scalar
    tags this log writes, e.g. ``test/bpd``)."""
    from tensorboardX.summary import hparams  # noqa: PLC0415
    flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in flatten(config).items()}
    for summary in hparams(flat, dict.fromkeys(metrics, 0.0)):
      self.writer.file_writer.add_summary(summary)

  def flush(self):
    self.writer.flush()
    if self.remote:
      for name in os.listdir(self._local):
        with open(os.path.join(self._local, name), "rb") as f:
          storage.write_bytes_atomic(self.logdir / name, f.read())

  def close(self):
    self.flush()
    self.writer.close()
    if self.remote:
      shutil.rmtree(self._local, ignore_errors=True)


def flatten(tree: dict, prefix: str = "") -> dict:
  """A nested config dict as {"model.hidden": ..., "lr": ...}."""
  out = {}
  for k, v in tree.items():
    out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


# metrics.jsonl key -> TensorBoard tag (grouped as TensorBoard shows them).
TAGS = {"train_bpd": "train/bpd", "grad_norm": "train/grad_norm", "lr": "train/lr",
        "skipped_steps": "train/skipped_steps", "steps_per_s": "speed/steps_per_s",
        "images_per_s": "speed/images_per_s", "test_bpd": "test/bpd",
        "minutes": "time/minutes"}


class MetricsLog:
  """metrics.jsonl (+ TensorBoard); on resume, rows after the restored step are dropped
  so every step appears once.

  Locally rows are appended. Object stores cannot append, so in a ``gs://`` or
  ``s3://`` workdir the whole file is rewritten (atomically) with each row: a few
  hundred kilobytes for a long run, written every ``log_every`` steps.
  """

  def __init__(self, workdir, resume_step: int | None, tensorboard: bool = True):
    workdir = storage.as_path(workdir)
    self.path = workdir / "metrics.jsonl"
    self.active = jax.process_index() == 0
    self.remote = storage.is_remote(workdir)
    rows = [] if resume_step is None else \
        [r for r in read_metrics(self.path) if r["step"] <= resume_step]
    self._lines = [json.dumps(r) + "\n" for r in rows]
    if self.active:
      storage.write_text_atomic(self.path, "".join(self._lines))
    self.offset_minutes = max((r.get("minutes", 0.0) for r in rows), default=0.0)
    self.tb = TensorBoardLog.create(
        workdir / "tensorboard", purge_step=None if resume_step is None else resume_step + 1) \
        if tensorboard and self.active else None

  def write(self, row: dict):
    if not self.active:
      return
    line = json.dumps(row) + "\n"
    if self.remote:
      self._lines.append(line)
      storage.write_text_atomic(self.path, "".join(self._lines))
    else:
      with self.path.open("a") as f:
        f.write(line)
    if self.tb is not None:
      self.tb.scalars(row["step"], {TAGS.get(k, k): v for k, v in row.items() if k != "step"})
      self.tb.flush()  # every log_every steps: a kill loses no logged row

  def hparams(self, config: dict):
    """The config in TensorBoard's HParams tab, against the train and test bits/dim
    (no-op without TensorBoard)."""
    if self.tb is not None:
      self.tb.hparams(config, (TAGS["test_bpd"], TAGS["train_bpd"]))

  def image(self, tag: str, image, step: int):
    """A figure for TensorBoard's Images tab (no-op without TensorBoard or off process 0)."""
    if self.tb is not None:
      self.tb.image(tag, image, step)

  def close(self):
    if self.tb is not None:
      self.tb.close()
