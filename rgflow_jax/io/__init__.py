"""The outside world: paths (local or gs://), checkpoints, run locks, metrics logs,
progress bars, processes of a multi-host run, the authors' state dicts."""
