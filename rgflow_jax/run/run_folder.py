"""A run folder's history: what an earlier run left there, and moving it aside whole.

A trainer resumes from the newest intact checkpoint. Where there is none to resume, the
folder may still hold an earlier run that had one: its best checkpoint, damaged
checkpoints, evaluations, or metrics past the first checkpoint it saved (the loop
saves before it logs a later step, so such rows prove a committed checkpoint). Training
from step 0 there would overwrite that run, so the trainer refuses unless told what to
do (:func:`rgflow_jax.run.training.train_and_evaluate`'s ``earlier_run``):

- ``"resume_from_best"``: go on from ``best/``, which holds a whole checkpoint
  (parameters, optimizer state, data position); the steps after it are trained again;
- ``"start_over"``: move every file of the earlier run to
  ``earlier-runs/<date>-<time>/`` in the run folder (never deleted), then train from 0.

A run killed before its first checkpoint leaves only what a restart writes again (its
config, metrics rows of that first interval, event files, early samples): that is not
an earlier run, and the restart goes ahead.
"""

from __future__ import annotations

import dataclasses
import time

from rgflow_jax.io import metrics, storage

# What a run writes in its folder (the run lock aside), files and folders.
RUN_FILES = ("config.json", "metrics.jsonl", "bpd_curve.png")
RUN_FOLDERS = ("checkpoints", "best", "damaged", "tensorboard", "samples", "eval")
EARLIER_RUNS = "earlier-runs"
CHOICES = ("resume_from_best", "start_over")


@dataclasses.dataclass(frozen=True)
class Survey:
  """What a run folder holds, read without changing anything.

  ``present``: the run's files and folders there; ``wrong_kind``: those that are a file
  where a folder belongs or the other way round; ``checkpoint_steps`` / ``best_steps``:
  the step folders of ``checkpoints/`` and ``best/``; ``evidence``: in words, what
  shows an earlier run that had a checkpoint (empty if nothing does)."""

  workdir: object
  present: tuple[str, ...]
  wrong_kind: tuple[str, ...]
  checkpoint_steps: tuple[int, ...]
  best_steps: tuple[int, ...]
  evidence: tuple[str, ...]


def _steps(folder) -> tuple[int, ...]:
  """The committed step folders of an Orbax manager's folder, newest first."""
  if not folder.is_dir():
    return ()
  return tuple(sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()),
                      reverse=True))


def _entries(folder) -> int:
  return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def survey(workdir, first_save: int) -> Survey:
  """The run folder ``workdir`` as it is. ``first_save``: the step of the first
  checkpoint the run that wrote the folder would have saved (rows of metrics.jsonl
  beyond it prove that checkpoint was committed). Malformed metrics rows are a one-line
  :class:`~rgflow_jax.io.storage.RunFileError`."""
  workdir = storage.as_path(workdir)
  present, wrong = [], []
  for name in RUN_FILES + RUN_FOLDERS:
    path = workdir / name
    if path.exists():
      present.append(name)
      if path.is_dir() != (name in RUN_FOLDERS):
        wrong.append(name)
  steps = _steps(workdir / "checkpoints")
  best = _steps(workdir / "best")
  evidence = []
  if "checkpoints" in wrong:
    evidence.append("checkpoints is a file, not a folder")
  if best:
    evidence.append(f"best/ (step {best[0]})")
  for name, what in (("damaged", "set aside"), ("eval", "evaluation outputs")):
    n = _entries(workdir / name) if name not in wrong else 0
    if n:
      evidence.append(f"{name}/ ({n} {what})")
  if "metrics.jsonl" in present and "metrics.jsonl" not in wrong:
    logged = [r["step"] for r in metrics.read_metrics(workdir / "metrics.jsonl")]
    if logged and max(logged) > first_save:
      evidence.append(f"metrics.jsonl (steps {min(logged)} to {max(logged)})")
  return Survey(workdir, tuple(present), tuple(wrong), steps, best, tuple(evidence))


def stamp() -> str:
  """The date and time that names a folder of things moved aside."""
  return time.strftime("%Y%m%d-%H%M%S")


def move_aside(workdir, names) -> object:
  """Move ``names`` (of the run folder ``workdir``) whole into a new
  ``earlier-runs/<date>-<time>/`` of it, keeping their names; returns that folder."""
  workdir = storage.as_path(workdir)
  base = workdir / EARLIER_RUNS / stamp()
  target, n = base, 1
  while target.exists():  # two start-overs within one second
    n += 1
    target = base.parent / f"{base.name}-{n}"
  for name in names:
    storage.move(workdir / name, target / name)
  return target
