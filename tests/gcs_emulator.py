"""A local GCS emulator for the tests: ``python tests/gcs_emulator.py PORT BUCKET``.

gcp-storage-emulator, in memory, on 127.0.0.1, with one gap filled: its media
downloads do not send the ``x-goog-generation`` header that real GCS sends with every
object, which tensorstore (under Orbax) reads as the object's version
("Malformed StorageGeneration" otherwise). The header is added from the object's own
metadata; nothing else about the emulator changes.
"""

import sys

from gcp_storage_emulator.handlers import objects


def _download_with_generation(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # noqa: BLE001  (not found: the original handler answers 404)
    obj = None
  if obj is not None:
    response["x-goog-generation"] = str(obj.get("generation") or "1")
    response["x-goog-metageneration"] = str(obj.get("metageneration") or "1")
  return _download(request, response, storage, *args, **kwargs)


_download = objects.download
objects.download = _download_with_generation  # before server builds its routing table

from gcp_storage_emulator.server import create_server  # noqa: E402


def main():
  port, bucket = int(sys.argv[1]), sys.argv[2]
  create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()


if __name__ == "__main__":
  main()
