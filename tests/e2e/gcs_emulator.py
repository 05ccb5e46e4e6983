"""A local GCS emulator for the tests: ``python tests/e2e/gcs_emulator.py PORT BUCKET``.

gcp-storage-emulator, in memory, on 127.0.0.1, with one gap filled: its media
downloads do not send the ``x-goog-generation`` header that real GCS sends with every
object, which tensorstore (under Orbax) reads as the object's version
("Malformed StorageGeneration" otherwise). The header is added from the object's own
metadata. And a second gap: it ignores the ``ifGenerationMatch`` precondition of
uploads and deletes, which real GCS enforces (412 when the object's generation
differs; 0 means "must not exist") and the run lock relies on. Nothing else changes.
"""

import sys
from http import HTTPStatus

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


def _generation(storage, bucket, name) -> str:
  try:
    return str(storage.get_file_obj(bucket, name).get("generation") or "1")
  except Exception:  # noqa: BLE001  (no such object)
    return "0"


def _with_precondition(handler, name_of):
  def checked(request, response, storage, *args, **kwargs):
    want = request.query.get("ifGenerationMatch")
    if want and want[0] != _generation(storage, request.params["bucket_name"],
                                       name_of(request)):
      response.status = HTTPStatus.PRECONDITION_FAILED
      return None
    return handler(request, response, storage, *args, **kwargs)
  return checked


def _upload_name(request):
  if "name" in request.query:
    return request.query["name"][0]
  return request.data["meta"].get("name")


_download = objects.download
# Before the server builds its routing table:
objects.download = _download_with_generation
objects.insert = _with_precondition(objects.insert, _upload_name)
objects.delete = _with_precondition(objects.delete, lambda r: r.params["object_id"])

from gcp_storage_emulator.server import create_server  # noqa: E402


def main():
  port, bucket = int(sys.argv[1]), sys.argv[2]
  create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()


if __name__ == "__main__":
  main()
