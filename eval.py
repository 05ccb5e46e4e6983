"""Evaluate a trained run: ``python eval.py --config configs/msds1.py:cpu --workdir runs/x --mode all``.

Modes: bpd, samples, progressive, rf, traverse, mix, inpaint, curve, all
(comma-separated for several). ``--images f.npz``
evaluates bits/dim on any uint8 image set. Writes PNGs and eval.json to <workdir>/eval/.
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder with checkpoints.")
_MODE = flags.DEFINE_string("mode", "all", "bpd, samples, progressive, rf, traverse, mix, "
                            "inpaint, curve or all (comma-separated).")
_IMAGES = flags.DEFINE_string("images", None, ".npz of uint8 images (N, H, W, C) for bpd.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_DRAWS = flags.DEFINE_integer("draws", 4, "Dequantisation draws for bpd.", lower_bound=1)
_MAX_IMAGES = flags.DEFINE_integer("max_images", None, "Evaluate bpd on the first N images.",
                                   lower_bound=1)
_INPAINT_IMAGES = flags.DEFINE_integer("inpaint_images", 4, "Test images to inpaint.",
                                       lower_bound=1)
_INPAINT_STARTS = flags.DEFINE_integer("inpaint_starts", 200, "Random starts per inpainting.",
                                       lower_bound=1)
_INPAINT_STEPS = flags.DEFINE_integer("inpaint_steps", 300, "Adam steps per inpainting.",
                                      lower_bound=0)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from rgflow_jax import cli
  cli.quiet_libraries()
  from rgflow_jax.data import DataError
  from rgflow_jax.evaluation import evaluate
  from rgflow_jax.run_config import TrainingError
  try:
    results = evaluate(cli.load_config(_CONFIG), _WORKDIR.value, _MODE.value.split(","),
                       _IMAGES.value, _CHECKPOINT.value, _DRAWS.value, _MAX_IMAGES.value,
                       inpaint_images=_INPAINT_IMAGES.value,
                       inpaint_starts=_INPAINT_STARTS.value, inpaint_steps=_INPAINT_STEPS.value)
  except (DataError, TrainingError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  print(json.dumps({k: v for k, v in results.items() if k != "rf"}, indent=1))
  if "test_bpd" in results:
    r = results["test_bpd"]
    print(f"test bits/dim: {r['bpd']:.4f} +- {r['stderr']:.4f} ({r['images']} images)")
  if "inpaint" in results:
    r = results["inpaint"]
    for how in r["modes"]:
      where = "the cone's blocks only" if r["rows"][0][f"local_{how}"] else "the whole image"
      print(f"inpainting (free: {how}; each step computes {where}): PSNR "
            f"{r[f'mean_psnr_{how}']:.2f} dB (corrupted {r['mean_psnr_corrupted']:.2f}), "
            f"{r[f'median_seconds_{how}']:.2f} s per image (median)")


if __name__ == "__main__":
  from rgflow_jax import xla_cpu
  xla_cpu.tune_cpu_process()  # on CPU only: XLA flag, allocator restart, dispatch (see xla_cpu)
  from rgflow_jax import cli
  app.run(main, flags_parser=cli.parse_flags)
