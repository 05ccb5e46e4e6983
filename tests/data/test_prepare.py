"""Preparing a tfds set once and copying it to each host: missing official files named in
one line, a copy complete or absent, and a host that has it copies nothing."""

import pytest

from rgflow_jax.data import TFDS_SETS, prepare


def test_preparing_without_the_official_files_names_them(tmp_path):
  spec = TFDS_SETS["celeba"]
  with pytest.raises(SystemExit) as exit_:
    prepare.prepare("celeba", str(tmp_path))
  message = str(exit_.value)
  assert message.startswith("error: celeba needs ") and "\n" not in message
  assert all(f in message for f in spec.manual_files)
  assert str(tmp_path / "downloads" / "manual") in message


def test_a_prepared_set_is_copied_whole_once(tmp_path, capsys):
  name = TFDS_SETS["mnist"].tfds_name
  source = tmp_path / "bucket"
  files = {"3.0.1/dataset_info.json": b"{}", "3.0.1/mnist-train.array_record-00000-of-00001":
           bytes(range(256)) * 64}
  for rel, content in files.items():
    (source / name / rel).parent.mkdir(parents=True, exist_ok=True)
    (source / name / rel).write_bytes(content)
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  (data_dir / f".{name}.partial").mkdir()  # left by a copy that was cut off
  assert prepare.copy_prepared("mnist", str(source), str(data_dir))
  assert {str(p.relative_to(data_dir / name)): p.read_bytes()
          for p in (data_dir / name).rglob("*") if p.is_file()} == files
  assert sorted(p.name for p in data_dir.iterdir()) == [name]  # no partial folder left
  assert "copied 2 files of mnist" in capsys.readouterr().out
  assert not prepare.copy_prepared("mnist", str(source), str(data_dir))  # there already
  with pytest.raises(SystemExit, match="no prepared cifar10 at .*: prepare it once"):
    prepare.copy_prepared("cifar10", str(source), str(data_dir))
