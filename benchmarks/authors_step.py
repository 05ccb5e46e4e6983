"""Times the authors' PyTorch RG-Flow (hongyehu/RG-Flow, unchanged) at one model size.

Run by ``benchmarks/step_time.py --authors-code DIR`` in an interpreter that has torch
(``--authors-python``), so that both codes are timed in one run on one machine:

    python benchmarks/authors_step.py --authors-code ~/RG-Flow --n_layers 1 --n_res 1 \
        --mlp_depth 1 --hidden 32 [--batch 64 --steps 10 --warmup 3]

It imports the authors' modules from DIR as they are. Two imports of theirs that the
model does not use are replaced by empty modules first: ``torchvision`` (dataset
classes in utils/data_utils.py) and ``utils_support`` (plotting, needs scikit-image).
The timed step is the body of their training loop: logit transform, loss
-(log p + log-det) / (C L^2), backward, global-norm clipping at 1, AdamW (lr 1e-3,
weight decay 5e-5), on 32 x 32 x 3 images, k = 4, the Laplace prior. Prints one JSON
line: seconds per step, no-grad forward and sampling (median, min, max).

``--device cuda`` runs their model on the GPU (their build puts it on ``args.device``)
and waits for the GPU around every timed call; ``--tf32 on`` lets PyTorch's float32
matmuls and convolutions use TF32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import types

L, C, K = 32, 3, 4


def _import_authors(code_dir: str):
  if not os.path.isfile(os.path.join(code_dir, "main.py")):
    sys.exit(f"error: {code_dir} is not the authors' code folder (no main.py there); "
             "pass the folder that holds their main.py, args.py and layers/")
  vision = types.ModuleType("torchvision")
  vision.datasets = types.ModuleType("torchvision.datasets")
  vision.transforms = types.ModuleType("torchvision.transforms")
  vision.datasets.VisionDataset = type("VisionDataset", (), {})
  support = types.ModuleType("utils_support")
  support.my_tight_layout = support.plot_samples_np = None
  sys.modules.update({"torchvision": vision, "torchvision.datasets": vision.datasets,
                      "torchvision.transforms": vision.transforms, "utils_support": support})
  sys.argv = ["main.py", "--out_dir", "", "--no_stdout"]  # their args module parses argv
  sys.path.insert(0, code_dir)
  import args as their_args  # noqa: PLC0415
  import main as their_main  # noqa: PLC0415
  import utils as their_utils  # noqa: PLC0415
  return their_args, their_main, their_utils


def _model(their_args, their_main, sizes: dict, device):
  import torch  # noqa: PLC0415
  argv = ["--data", "msds1", "--nchannels", str(C), "--L", str(L), "--prior", "laplace",
          "--subnet", "rnvp", "--kernel_size", str(K), "--out_dir", "", "--no_stdout"]
  for flag, key in (("--nlayers", "n_layers"), ("--nresblocks", "n_res"),
                    ("--nmlp", "mlp_depth"), ("--nhidden", "hidden")):
    argv += [flag, ",".join(str(v) for v in sizes[key])]
  a = their_args.args
  vars(a).update(vars(their_args.parser.parse_args(argv)))
  a.device = device
  a.depth = 2 * (int(math.log2(L // K)) + 1)  # two layers a level, as their args.py sets
  for key in ("nlayers", "nresblocks", "nmlp", "nhidden"):
    setattr(a, f"{key}_list", their_args.str_to_int_list(getattr(a, key), a.depth))
  torch.manual_seed(0)
  return their_main.build_mera()


def _summary(times: list[float]) -> dict:
  return {"median": statistics.median(times), "min": min(times), "max": max(times),
          "n": len(times)}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--authors-code", required=True, help="the folder with their main.py")
  for key in ("n_layers", "n_res", "mlp_depth", "hidden"):
    p.add_argument(f"--{key}", required=True,
                   help="one int, or one per level, comma-separated")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU)")
  p.add_argument("--tf32", default="off", choices=["off", "on"],
                 help="TF32 float32 matmuls on a GPU (PyTorch's default: off)")
  args = p.parse_args(argv)
  import numpy as np  # noqa: PLC0415
  import torch  # noqa: PLC0415
  torch.set_num_threads(args.threads)
  device = torch.device(args.device)
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize()
  their_args, their_main, their_utils = _import_authors(os.path.abspath(args.authors_code))
  sizes = {k: [int(v) for v in str(getattr(args, k)).split(",")]
           for k in ("n_layers", "n_res", "mlp_depth", "hidden")}
  flow = _model(their_args, their_main, sizes, device)
  params = [q for q in flow.parameters() if q.requires_grad]
  opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=5e-5)
  images = np.random.default_rng(0).integers(0, 256, (args.batch, C, L, L), dtype=np.uint8)
  x_u8 = torch.from_numpy(images).to(device)

  def step():
    opt.zero_grad()
    x, ld_logit = their_utils.logit_transform(x_u8.float() / 255)
    loss = (-(flow.log_prob(x) + ld_logit) / (C * L * L)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()

  def timed(fn, n):
    out = []
    for _ in range(n):
      sync()
      t = time.perf_counter()
      fn()
      sync()
      out.append(time.perf_counter() - t)
    return out

  flow.train(True)
  timed(step, args.warmup)
  steps = timed(step, args.steps)
  flow.train(False)
  with torch.no_grad():
    x, _ = their_utils.logit_transform(x_u8.float() / 255)
    forward = timed(lambda: flow.log_prob(x), 3)
    sample = timed(lambda: flow.sample(args.batch), 3)
  result = {"step_s": _summary(steps), "forward_s": _summary(forward),
            "sample_s": _summary(sample), "batch": args.batch, "threads": args.threads,
            "device": str(device), "tf32": args.tf32,
            "torch": torch.__version__,
            "params": sum(q.numel() for q in flow.parameters() if q.requires_grad)}
  print(json.dumps(result), flush=True)
  return result


if __name__ == "__main__":
  main()
