"""Files anywhere: local folders and object stores (``gs://``, ``s3://``) as one path type.

Every file the project reads or writes goes through :func:`as_path`, an
``etils.epath.Path`` (the type Orbax, tfds and grain use): local paths behave as
pathlib's, ``gs://bucket/...`` goes through gcsfs and ``s3://bucket/...`` through s3fs
(``pip install "rgflow-jax[gcs]"`` or ``[s3]``).

Atomic writes. Locally a file is written to a temporary name beside it, flushed to
disk and renamed over the target, so a reader (or a killed run) sees the old file or
the new one, never half of one; it gets the mode a plain ``open`` would (0644 under
umask 022), not the temporary file's 0600. An object store has no rename, but it publishes an
object only once its upload has completed: a whole-object write is just as atomic
there, and that is what :func:`write_bytes_atomic` does for remote paths. What object
stores cannot do is append: see :class:`rgflow_jax.io.metrics.MetricsLog`.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import tempfile

from etils import epath

from rgflow_jax.core.errors import RGFlowError

REMOTE_SCHEMES = ("gs://", "s3://", "az://", "hf://")


class StorageError(RGFlowError, OSError):
  """A path that cannot be reached or written; the message names it and the fix."""


class RunFileError(RGFlowError, ValueError):
  """A file of a run folder (config.json, a metrics row, checkpoint metadata) that is
  there but does not hold what it must; the message names the file, the line or key,
  and what is wrong. Nothing is moved or rewritten because of it."""


def as_path(path) -> epath.Path:
  """Any str / os.PathLike / epath.Path as an ``epath.Path`` (``gs://`` kept as a URL)."""
  return path if isinstance(path, epath.Path) else epath.Path(os.fspath(path))


def is_remote(path) -> bool:
  return os.fspath(path).startswith(REMOTE_SCHEMES)


def absolute(path) -> epath.Path:
  """Local paths made absolute (Orbax wants them so); URLs as they are."""
  path = as_path(path)
  return path if is_remote(path) else as_path(os.path.abspath(os.fspath(path)))


def files_under(folder) -> list[epath.Path]:
  """Every file below ``folder`` (recursively), sorted; works on object stores too."""
  folder = as_path(folder)
  scheme = str(folder).split("://")[0] + "://" if "://" in str(folder) else ""
  found = []
  for root, _, names in folder.walk():
    root = str(root)  # an object store's walk gives "bucket/..." without its scheme
    root = root if not scheme or root.startswith(scheme) else scheme + root
    found.extend(as_path(root) / name for name in names)
  return sorted(found, key=str)


def error_line(e: BaseException) -> str:
  """An exception as one line: its type and the first line of its message."""
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0] if text else 'no message'}"


def write_bytes_atomic(path, data: bytes) -> epath.Path:
  path = as_path(path)
  if is_remote(path):
    path.write_bytes(data)  # one object upload, all of it or nothing; no folders to make
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.fspath(path.parent), prefix=path.name, suffix=".tmp")
  try:
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; files get the umask's mode
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.fspath(path))
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def _umask() -> int:
  """The process's umask: from /proc on Linux, else by setting it and putting it back
  (which other threads could see for an instant)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_text_atomic(path, text: str) -> epath.Path:
  return write_bytes_atomic(path, text.encode())


def write_json_atomic(path, obj) -> epath.Path:
  return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path):
  """The JSON in ``path``; a malformed file is a :class:`RunFileError` that names it."""
  path = as_path(path)
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise RunFileError(f"{path}: not valid JSON ({e})") from None


def move(src, dst) -> epath.Path:
  """Move a file or a whole folder to ``dst`` (its parent folders made); refuses to
  replace anything at ``dst``. Locally a rename; on an object store a copy of every
  object, then the deletion of the originals (what ``gsutil mv`` does)."""
  src, dst = as_path(src), as_path(dst)
  if dst.exists():
    raise FileExistsError(f"cannot move {src} to {dst}: it exists")
  if is_remote(src):
    import fsspec  # noqa: PLC0415  (installed with gcsfs / s3fs)
    fs, _ = fsspec.core.url_to_fs(os.fspath(src))
    fs.mv(os.fspath(src), os.fspath(dst), recursive=True)
  else:
    os.makedirs(os.fspath(dst.parent), exist_ok=True)
    os.rename(os.fspath(src), os.fspath(dst))
  return dst


def save_npy(path, array) -> epath.Path:
  import numpy as np  # noqa: PLC0415
  buf = io.BytesIO()
  np.save(buf, array)
  return write_bytes_atomic(path, buf.getvalue())


def load_npy(path, mmap: bool = True):
  """A .npy array; memory-mapped where the file is local (and ``mmap``), else read whole."""
  import numpy as np  # noqa: PLC0415
  path = as_path(path)
  if mmap and not is_remote(path):
    return np.load(os.fspath(path), mmap_mode="r")
  return np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)


def save_figure(fig, path, **kwargs) -> epath.Path:
  """A matplotlib figure as PNG (or the suffix's format), written atomically."""
  path = as_path(path)
  buf = io.BytesIO()
  fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
  return write_bytes_atomic(path, buf.getvalue())


def save_image(image, path, **kwargs) -> epath.Path:
  """A PIL image in the format of ``path``'s suffix, written atomically."""
  path = as_path(path)
  buf = io.BytesIO()
  image.save(buf, format=_PIL_FORMATS.get(path.suffix.lower(), "PNG"), **kwargs)
  return write_bytes_atomic(path, buf.getvalue())


_PIL_FORMATS = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG"}


def check_writable(folder, what: str = "folder") -> epath.Path:
  """Create ``folder`` if needed and prove it takes a file; a one-line StorageError if not.

  Called at the start of a run, so that a wrong URL, missing credentials or a
  read-only disk fail in seconds rather than at the first checkpoint.
  """
  folder = as_path(folder)
  probe = folder / f".rgflow_write_test.{os.getpid()}"  # one per process of a run
  try:
    if not is_remote(folder):  # an object store has no folders to make
      folder.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except Exception as e:  # noqa: BLE001  (fsspec back ends raise many types)
    hint = ("check the bucket name and your credentials (gcloud auth application-default "
            "login, or AWS_* variables) and that gcsfs / s3fs is installed"
            if is_remote(folder) else "check that it is a writable folder")
    raise StorageError(f"cannot write to the {what} {folder} ({error_line(e)}); "
                       f"{hint}") from None
  return folder


def check_free_space(folder, nbytes: int, what: str) -> None:
  """A one-line StorageError if a local ``folder`` has less than ``nbytes`` free, before
  anything is written (a write that runs out of space midway leaves a partial file and,
  in Orbax, hundreds of lines from its writer threads). Object stores are not checked."""
  folder = as_path(folder)
  if is_remote(folder):
    return
  free = shutil.disk_usage(os.fspath(folder)).free
  if free < nbytes:
    raise StorageError(
        f"not enough disk space for {what}: about {nbytes / 2**20:.1f} MiB needed in "
        f"{folder}, {free / 2**20:.1f} MiB free; free some space (or lower "
        "config.train.checkpoint.keep) and rerun to resume from the last checkpoint")


def size_on_disk(folder) -> int:
  """Bytes of every file under a local ``folder`` (0 for object stores)."""
  folder = as_path(folder)
  if is_remote(folder):
    return 0
  return sum(f.stat().st_size for f in pathlib.Path(folder).rglob("*") if f.is_file())
