"""One-off preparation of a tfds set from its official files, offline.

    pip install "rgflow-jax[prepare]"          # TensorFlow: needed for this step only
    python -m rgflow_jax.data.prepare celeba --data_dir data

reads the official files from ``<data_dir>/downloads/manual/`` (or ``--manual_dir``)
and writes ``<data_dir>/<tfds name>/<version>/`` in the array_record format, which
training then reads without TensorFlow.

tfds reads that format from local disk only, so many hosts (a TPU pod) each need a
copy: prepare once, upload the folder (``gcloud storage cp -r data/celeb_a
gs://BUCKET/data/``), then on every host

    python -m rgflow_jax.data.prepare celeba --copy_from gs://BUCKET/data --data_dir data

copies ``gs://BUCKET/data/celeb_a`` to ``data/celeb_a`` (any path epath reads; no
TensorFlow needed). A copy is complete or absent: it is written beside and renamed, and
a host that has it copies nothing (docs/many-hosts.md).
"""

from __future__ import annotations

import argparse
import logging
import shutil
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
    sys.exit('error: preparing needs TensorFlow: pip install "rgflow-jax[prepare]" (in a '
             "clone: pip install -r requirements-prepare.txt)")
  import tensorflow_datasets as tfds
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)),
      file_format="array_record")
  print(f"prepared {name} in {builder.data_dir}")


def copy_prepared(name: str, source: str, data_dir: str) -> bool:
  """``<source>/<tfds name>`` to ``<data_dir>/<tfds name>``; False where it is there
  already. Written to a folder beside and renamed: never half a copy."""
  spec = TFDS_SETS[name]
  src = storage.as_path(source) / spec.tfds_name
  dst = storage.as_path(data_dir) / spec.tfds_name
  if dst.exists():
    return False
  if not src.exists():
    sys.exit(f"error: no prepared {name} at {src}: prepare it once (python -m "
             f"rgflow_jax.data.prepare {name}) and upload its {spec.tfds_name} folder there")
  files = storage.files_under(src)
  partial = dst.parent / f".{spec.tfds_name}.partial"
  if partial.exists():
    partial.rmtree()
  for f in files:
    out = partial / f.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    with f.open("rb") as reader, out.open("wb") as writer:  # streamed: files of GBs
      shutil.copyfileobj(reader, writer, 1 << 24)
  partial.rename(dst)
  print(f"copied {len(files)} files of {name} from {src} to {dst}")
  return True


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("name", choices=sorted(TFDS_SETS))
  parser.add_argument("--data_dir", default="data")
  parser.add_argument("--manual_dir", default=None)
  parser.add_argument("--copy_from", default=None,
                      help="copy a prepared set from this folder (e.g. gs://BUCKET/data) "
                           "instead of preparing it: for every host of a pod")
  args = parser.parse_args(argv)
  for name in ("gcsfs", "fsspec", "s3fs"):  # object-store clients' retries and notes
    logging.getLogger(name).setLevel(logging.CRITICAL)
  if args.copy_from:
    copy_prepared(args.name, args.copy_from, args.data_dir)
  else:
    prepare(args.name, args.data_dir, args.manual_dir)


if __name__ == "__main__":
  main()
