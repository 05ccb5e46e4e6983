"""``rgflow-convert``: models trained with the authors' PyTorch code, in and out of
rgflow-jax (the logic: :mod:`rgflow_jax.run.convert`).

    rgflow-convert --from run_save/100.state --config msds1:authors --workdir runs/imported
    rgflow-convert --to exported.state --config msds1:authors --workdir runs/imported

(or ``python -m rgflow_jax.cli.convert``).

``--from`` reads one of their checkpoints (a ``torch.save``d ``{'flow': state_dict, ...}``,
with or without nn.DataParallel's ``module.net.`` prefix; or an ``.npz`` of the
state_dict's arrays, which needs no torch), maps every tensor onto the config's model
(which must use ``layer_order=authors``: the ``:authors`` variant) and writes an Orbax
checkpoint at step 0 with a fresh optimizer, which rgflow-eval and rgflow-compare load
like any run and rgflow-train fine-tunes. ``--to`` writes the workdir's latest parameters as their
state_dict, for their code (``flow.load_state_dict(torch.load(f)['flow'])``).
Reading and writing ``.state`` files needs torch (``pip install "rgflow-jax[torch]"``).
"""

from __future__ import annotations

import sys

from absl import flags


def _define_flags():
  """The command line's flags, defined only when run as a program (importing this
  module defines none)."""
  from rgflow_jax import cli  # noqa: PLC0415
  cli.define_config_flag()
  flags.DEFINE_string("workdir", None, "Run folder to write (--from) or read (--to).")
  flags.DEFINE_string("from", None, "The authors' checkpoint (.state/.pth, or .npz).")
  flags.DEFINE_string("to", None, "Where to write the workdir's model as theirs (.state or .npz).")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rgflow_jax import cli  # noqa: PLC0415
  cli.quiet_libraries()
  from rgflow_jax.core.errors import RGFlowError  # noqa: PLC0415
  from rgflow_jax.run.convert import export_run, import_run  # noqa: PLC0415
  f = flags.FLAGS
  source, target, workdir = f["from"].value, f["to"].value, f["workdir"].value
  if bool(source) == bool(target):
    sys.exit("error: give one of --from (import their checkpoint) or --to (export)")
  config = cli.load_config(f["config"])
  try:
    if source:
      n = import_run(config, source, workdir)
      print(f"imported {source} ({n:,} parameters) into {workdir} as step 0")
    else:
      step = export_run(config, workdir, target)
      print(f"exported step {step} of {workdir} to {target}")
  except (RGFlowError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")


USAGE = """Models of the authors' PyTorch code in and out of rgflow-jax.

  rgflow-convert --from run_save/100.state --config msds1:authors --workdir runs/imported
  rgflow-convert --to exported.state --config msds1:authors --workdir runs/imported

--config is {config_help}
"""


def run():
  """The console script ``rgflow-convert`` (and ``python -m rgflow_jax.cli.convert``)."""
  from rgflow_jax import cli, configs  # noqa: PLC0415
  cli.run_program(main, _define_flags, USAGE.format(config_help=configs.help_text()))


if __name__ == "__main__":
  run()
