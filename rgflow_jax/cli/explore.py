"""``rgflow-explore`` (or ``python -m rgflow_jax.cli.explore``): a trained run's latents
in the browser, served on 127.0.0.1 (docs/explorer.md)."""

from __future__ import annotations

import importlib.util
import sys

from absl import flags

from rgflow_jax import cli

USAGE = """Explore a trained run's latents in the browser: receptive fields, live edits,
level mixing and inpainting.

  rgflow-explore --workdir runs/msds1-cpu [--port 8765] [--checkpoint best]

Serves one page on 127.0.0.1 (--host to serve elsewhere, with a warning) and prints
its URL. The run's programs are compiled once at start. Needs the [explore] extra
(pip install 'rgflow-jax[explore]': Flask).
"""


def _define_flags():
  flags.DEFINE_string("workdir", None, "Run folder with checkpoints (local or gs://).")
  flags.DEFINE_string("checkpoint", "best", "best, latest or a step number.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (127.0.0.1: this machine "
                      "only).")
  flags.DEFINE_integer("port", 8765, "Port (0: any free one; the URL says which).")
  flags.DEFINE_integer("test_images", 64, "Test images the page can open by index.")
  flags.DEFINE_integer("rf_samples", 16, "Prior draws per receptive field.")
  flags.DEFINE_integer("inpaint_starts", None, "Random starts per inpainting (default: "
                       "the run's config.eval.inpaint.starts).")
  flags.DEFINE_integer("inpaint_steps", None, "Adam steps per inpainting (default: the "
                       "run's config.eval.inpaint.steps).")
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  cli.quiet_libraries()
  f = flags.FLAGS
  if importlib.util.find_spec("flask") is None:  # the [explore] extra
    sys.exit("error: rgflow-explore needs Flask: pip install 'rgflow-jax[explore]'")
  for name, least in (("test_images", 0), ("rf_samples", 1), ("inpaint_starts", 1),
                      ("inpaint_steps", 1)):
    if f[name].value is not None and f[name].value < least:
      sys.exit(f"error: --{name} must be >= {least}")
  if not 0 <= f.port < 65536:
    sys.exit(f"error: --port must be in 0 .. 65535, got {f.port}")
  from rgflow_jax import load  # noqa: PLC0415
  from rgflow_jax.core.errors import RGFlowError  # noqa: PLC0415
  from rgflow_jax.explore import server, session  # noqa: PLC0415
  checkpoint = int(f.checkpoint) if f.checkpoint.isdigit() else f.checkpoint
  try:
    run = load(f.workdir, checkpoint)
    options = run.config.eval.inpaint
    explorer = session.Explorer.for_run(
        run, f.test_images, rf_samples=f.rf_samples,
        inpaint_starts=f.inpaint_starts or options.starts,
        inpaint_steps=f.inpaint_steps or options.steps)
    print(f"{f.workdir}: step {run.step} ({run.checkpoint} checkpoint); compiling the "
          "explorer's programs (once) ...", flush=True)
    print(f"compiled in {explorer.warm_up():.1f} s", flush=True)
    web = server.Server(explorer, f.host, f.port)
  except (RGFlowError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(f"explorer at {web.url} (Ctrl-C ends it)", flush=True)
  web.serve_forever()


def run():
  cli.run_program(main, _define_flags, USAGE, tune_cpu=True)


if __name__ == "__main__":
  run()
