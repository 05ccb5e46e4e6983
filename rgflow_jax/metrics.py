"""Run metrics: ``metrics.jsonl`` always, TensorBoard event files where TensorBoard is
installed (its pure-Python writer; TensorFlow is not needed; remote logdirs go through
fsspec, as TensorBoard itself reads them)."""

from __future__ import annotations

import io
import json
import os
import socket
import time

import jax

from rgflow_jax import storage


def read_metrics(path) -> list[dict]:
  path = storage.as_path(path)
  if not path.exists():
    return []
  rows = []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
  return rows


class TensorBoardWriter:
  """Scalars to ``logdir/events.out.tfevents.*`` in TensorBoard's record format (its
  pure-Python writer; no TensorFlow). Locally records are appended; on an object store,
  which cannot append, the whole file is uploaded again after each write.
  ``TensorBoardWriter.create`` is None without TensorBoard."""

  def __init__(self, logdir):
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._event, self._summary = Event, Summary
    logdir = storage.as_path(logdir)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self.path = logdir / name
    self.remote = storage.is_remote(logdir)
    if self.remote:
      self._file = io.BytesIO()
    else:
      logdir.mkdir(parents=True, exist_ok=True)
      self._file = open(os.fspath(self.path), "ab")  # noqa: SIM115  (closed in close())
    self._records = RecordWriter(self._file)
    self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))

  @classmethod
  def create(cls, logdir):
    try:
      return cls(logdir)
    except ImportError:
      return None

  def _add(self, event):
    self._records.write(event.SerializeToString())
    if self.remote:
      storage.write_bytes_atomic(self.path, self._file.getvalue())
    else:
      self._file.flush()

  def write(self, step: int, scalars: dict):
    values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._add(self._event(wall_time=time.time(), step=int(step),
                          summary=self._summary(value=values)))

  def close(self):
    self._file.close()


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
    self.tb = TensorBoardWriter.create(workdir / "tensorboard") \
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
      self.tb.write(row["step"], {k: v for k, v in row.items() if k != "step"})

  def close(self):
    if self.tb is not None:
      self.tb.close()
