"""One-off preparation of a tfds set from its official files, offline.

    pip install -r requirements-prepare.txt     # TensorFlow: needed for this step only
    python -m rgflow_jax.data.prepare celeba --data_dir data

reads the official files from ``<data_dir>/downloads/manual/`` (or ``--manual_dir``)
and writes ``<data_dir>/<tfds name>/<version>/`` in the array_record format, which
training then reads without TensorFlow. The prepared folder can be copied between
machines.
"""

from __future__ import annotations

import argparse
import sys

from rgflow_jax.data.tfds_sources import TFDS_SETS
from rgflow_jax.io import storage


def prepare(name: str, data_dir: str, manual_dir: str | None = None):
  spec = TFDS_SETS[name]
  manual = storage.as_path(manual_dir) if manual_dir else \
      storage.as_path(data_dir) / "downloads" / "manual"
  missing = [f for f in spec.manual_files if not (manual / f).exists()]
  if missing:
    sys.exit(f"error: {name} needs {', '.join(missing)} in {manual}/ (official files; "
             "this machine cannot download them)")
  try:
    import tensorflow  # noqa: F401  (tfds's builders need it to prepare)
  except ImportError:
    sys.exit("error: preparing needs TensorFlow: pip install -r requirements-prepare.txt")
  import tensorflow_datasets as tfds
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)),
      file_format="array_record")
  print(f"prepared {name} in {builder.data_dir}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("name", choices=sorted(TFDS_SETS))
  parser.add_argument("--data_dir", default="data")
  parser.add_argument("--manual_dir", default=None)
  args = parser.parse_args(argv)
  prepare(args.name, args.data_dir, args.manual_dir)


if __name__ == "__main__":
  main()
