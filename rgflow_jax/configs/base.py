"""Defaults shared by every config: the paper's training setting (App. A).

AdamW, learning rate 1e-3, weight decay 5e-5, global-norm clipping at 1, batch 64;
RNVP blocks with n_res = 4 residual blocks of 2 hidden layers of width 512.
Per-level model sizes are tuples: one value for all levels, or one per level.

Precision: ``execution.matmul_precision`` sets float32 matrix products in the training step on
accelerators ('default': one bfloat16 pass on TPU, TF32 on recent NVIDIA GPUs;
'high'; 'highest': full float32); test bits/dim, samples and round trips always run
at 'highest'. ``execution.matmul_dtype='bfloat16'`` goes further: the RG-Flow
conditioners' matmul inputs in bfloat16 in the training step (float32 accumulation;
log-dets and loss in float32). ``execution`` holds how the model is computed, never
what (rgflow_jax/core/execution.py): it may change when a run resumes.
"""

import ml_collections


# One line per config key for ``--help`` (rgflow_jax.configs.keys_help); a test checks
# that every key of base_config() has one.
KEY_HELP = {
    "seed": "seed of the parameters, noise and sampling",
    "dtype": "float32 or float64 parameters and arithmetic",
    "progress": "progress bars and lines on stderr",
    "model.name": "rgflow, or realnvp (the baseline; the realnvp variant sets its keys)",
    "model.image_size": "image side L in pixels (a power of two times block_size)",
    "model.channels": "image channels C (the data's too)",
    "model.block_size": "side of the RNVP blocks (4: 4 x 4 patches)",
    "model.n_layers": "RNVP layers per block, one value or one per level",
    "model.n_res": "residual blocks per conditioner network, per level",
    "model.hidden": "width of the conditioners' hidden layers, per level",
    "model.mlp_depth": "hidden layers per residual block, per level",
    "model.share_levels": "one set of block parameters for every level",
    "model.prior": "laplace or gaussian",
    "model.layer_order": "paper (eqs. 6-9) or authors (their code's order)",
    "data.name": "msds1, msds2 (made locally), celeba, cifar10, mnist or folder",
    "data.n_train": "MSDS training images to generate",
    "data.n_test": "MSDS test images to generate",
    "data.seed": "seed of the data order (and of generated sets)",
    "data.flip": "random horizontal flips in training",
    "data.crop": "centre crop side before resizing (0: none)",
    "data.test_fraction": "share of data.location.path held out for testing",
    "data.location.data_dir": "where prepared and generated data sets are kept",
    "data.location.path": "folder of images (data.name folder)",
    "data.location.test_path": "folder of test images (else test_fraction of path)",
    "execution.remat": "auto, on or off: recompute each RNVP layer in the backward pass",
    "execution.scan_min_layers": "loops this long or longer compile as one lax.scan",
    "execution.matmul_dtype": "float32 or bfloat16 conditioner matmul inputs in training",
    "execution.hand_backward": "auto, on or off: the hand-written conditioner backward pass",
    "execution.matmul_precision": "default, high or highest: float32 matmuls on GPU/TPU",
    "execution.gpu_command_buffers": "GPU: launch the step's loops as CUDA graphs",
    "execution.compilation_cache_dir": "compiled programs kept: auto "
                                       "(~/.cache/rgflow_jax/xla), a folder, off",
    "train.batch_size": "images per training step, over all devices",
    "train.num_steps": "training steps of the run",
    "train.log_every": "steps between metrics rows (metrics.jsonl, TensorBoard)",
    "train.max_nonfinite": "non-finite steps in a row that stop the run",
    "train.time_limit_s": "training seconds of the run over all its launches (0: no limit)",
    "train.reference_curve": "{label: {minutes: [...], bpd: [...]}} drawn on bpd_curve.png",
    "train.optimizer.lr": "AdamW learning rate",
    "train.optimizer.weight_decay": "AdamW weight decay",
    "train.optimizer.grad_clip": "global-norm gradient clipping",
    "train.optimizer.schedule": "constant or cosine learning rate",
    "train.optimizer.warmup_steps": "linear warm-up steps",
    "train.optimizer.final_lr_frac": "cosine only: the final rate as a fraction of lr",
    "train.checkpoint.every": "steps between checkpoints",
    "train.checkpoint.keep": "latest checkpoints kept",
    "train.checkpoint.lock_lease_s": "gs:// and s3:// runs: the run lock's lease, seconds",
    "train.test.every": "steps between test bits/dim evaluations (and best checkpoints)",
    "train.test.images": "test images for the periodic test bits/dim",
    "train.samples.every": "steps between sample grids (0: none)",
    "train.samples.num": "images per sample grid",
    "train.samples.temperature": "temperature of the sample grids",
    "eval.batch_size": "images per evaluation batch (training's periodic test too)",
    "eval.modes": "rgflow-eval's modes, comma-separated, or all (--mode sets it)",
    "eval.checkpoint": "the checkpoint evaluated: best, latest or a step number",
    "eval.bpd.draws": "dequantisation draws for test bits/dim",
    "eval.bpd.max_images": "test bits/dim on the first N test images (0: all)",
    "eval.bpd.images": ".npz of uint8 images (N, H, W, C) for bits/dim instead of the "
                       "test set",
    "eval.rf.samples": "prior samples per receptive field",
    "eval.inpaint.images": "test images to inpaint",
    "eval.inpaint.starts": "random starts per inpainting",
    "eval.inpaint.steps": "Adam steps per inpainting",
    "eval.fid.weights": "FID Inception weights (.pth, .npz or download); enables fid",
    "eval.fid.images": "samples (and test images) for FID",
    "eval.fid.temperature": "sampling temperature for FID",
    "eval.semantic.samples": "MSDS: samples (and real images) for the semantic scores",
    "hosts.distributed": "many processes: call jax.distributed.initialize()",
    "hosts.coordinator_address": "many processes: process 0's HOST:PORT",
    "hosts.num_processes": "many processes: how many (-1: from the environment)",
    "hosts.process_id": "many processes: this one's index (-1: from the environment)",
    "hosts.heartbeat_timeout_s": "a lost process ends the others after this many seconds",
    "hosts.init_timeout_s": "seconds processes wait for each other at the start",
}

# Where each key of the flat layout (configs before sections) lives now: the saved-config
# migration (rgflow_jax.run.run_config) and the command line's old --config.KEY read it.
MOVED_KEYS = {
    "batch_size": "train.batch_size", "num_steps": "train.num_steps",
    "log_every": "train.log_every", "max_nonfinite": "train.max_nonfinite",
    "time_limit_s": "train.time_limit_s", "reference_curve": "train.reference_curve",
    "lr": "train.optimizer.lr", "weight_decay": "train.optimizer.weight_decay",
    "grad_clip": "train.optimizer.grad_clip", "schedule": "train.optimizer.schedule",
    "warmup_steps": "train.optimizer.warmup_steps",
    "final_lr_frac": "train.optimizer.final_lr_frac",
    "ckpt_every": "train.checkpoint.every", "keep_checkpoints": "train.checkpoint.keep",
    "lock_lease_s": "train.checkpoint.lock_lease_s", "eval_every": "train.test.every",
    "eval_images": "train.test.images", "eval_batch_size": "eval.batch_size",
    "sample_every": "train.samples.every", "num_samples": "train.samples.num",
    "sample_temperature": "train.samples.temperature",
    "distributed": "hosts.distributed", "coordinator_address": "hosts.coordinator_address",
    "num_processes": "hosts.num_processes", "process_id": "hosts.process_id",
    "heartbeat_timeout_s": "hosts.heartbeat_timeout_s",
    "init_timeout_s": "hosts.init_timeout_s",
    "matmul_precision": "execution.matmul_precision",
    "gpu_command_buffers": "execution.gpu_command_buffers",
    "compilation_cache_dir": "execution.compilation_cache_dir",
    "data.data_dir": "data.location.data_dir", "data.path": "data.location.path",
    "data.test_path": "data.location.test_path",
}
# Keys of the flat layout that are gone: the data's channels are the model's.
DROPPED_KEYS = ("data.channels",)


def base_config() -> ml_collections.ConfigDict:
  """The defaults, a section per concern: ``model`` (what is computed), ``data`` (its
  ``location`` may differ per host and on resume), ``execution`` (how it is computed:
  may change on resume), ``train`` (``optimizer``, ``checkpoint``, ``test``, ``samples``),
  ``eval`` (rgflow-eval and rgflow-compare) and ``hosts`` (many processes); ``seed``,
  ``dtype`` and ``progress`` apply to all of them."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dtype = "float32"
  c.progress = True
  c.model = ml_collections.ConfigDict(dict(
      name="rgflow", image_size=32, channels=3, block_size=4,
      n_layers=(4,), n_res=(4,), hidden=(512,), mlp_depth=(2,),
      share_levels=False, prior="laplace", layer_order="paper"))
  c.data = ml_collections.ConfigDict(dict(
      name="msds1", n_train=90_000, n_test=10_000, seed=0, flip=False, crop=0,
      test_fraction=0.1, location=dict(data_dir="data", path="", test_path="")))
  # Speed of the training step's float32 matmuls on GPU/TPU (see the docstring): the
  # coupling layers stay exactly invertible at any setting, and evaluation runs at
  # 'highest' regardless. gpu_command_buffers: on a GPU, the step's kernels, loops and
  # conditionals included, launched as CUDA graphs (jit_steps.GPU_COMMAND_BUFFERS).
  # compilation_cache_dir: JAX's persistent compilation cache, "auto" (the folder JAX
  # was given, else ~/.cache/rgflow_jax/xla), a folder (local or gs://), or "off".
  c.execution = ml_collections.ConfigDict(dict(
      remat="auto", scan_min_layers=5, matmul_dtype="float32", hand_backward="auto",
      matmul_precision="default", gpu_command_buffers=True, compilation_cache_dir="auto"))
  c.train = ml_collections.ConfigDict(dict(
      batch_size=64, num_steps=200_000, log_every=50,
      max_nonfinite=20,  # this many non-finite steps in a row stop the run
      # > 0: stop (with a checkpoint) when the run has trained this many seconds,
      # counted over all its launches (a rerun that finds them used trains nothing).
      time_limit_s=0.0,
      reference_curve={},  # {label: {"minutes": [...], "bpd": [...]}} on bpd_curve.png
      optimizer=dict(lr=1e-3, weight_decay=5e-5, grad_clip=1.0, schedule="constant",
                     warmup_steps=0, final_lr_frac=0.0),
      # gs:// and s3:// workdirs: the run lock is a lease renewed by the trainer; one
      # left by a trainer that died is taken over when this old (local ones need none).
      checkpoint=dict(every=1000, keep=3, lock_lease_s=300.0),
      test=dict(every=2000, images=1000),  # the periodic test bits/dim
      samples=dict(every=2000, num=64, temperature=1.0)))
  c.eval = eval_config()
  # Many processes (docs/many-hosts.md): distributed=True calls
  # jax.distributed.initialize(). The address, count and id are taken from
  # JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID where unset, or
  # detected by JAX (Cloud TPU, SLURM, Open MPI, GKE).
  c.hosts = ml_collections.ConfigDict(dict(
      distributed=False, coordinator_address="", num_processes=-1, process_id=-1,
      heartbeat_timeout_s=100, init_timeout_s=300))
  return c


def eval_config() -> ml_collections.ConfigDict:
  """What ``rgflow-eval`` and ``rgflow-compare`` do with a trained run
  (rgflow_jax/run/evaluation.py): a section per mode that has options. It may differ
  from the run's own config at every evaluation (``--config.eval.inpaint.steps=10``)."""
  return ml_collections.ConfigDict(dict(
      batch_size=250, modes="all", checkpoint="best",
      bpd=dict(draws=4, max_images=0, images=""),
      rf=dict(samples=8),
      inpaint=dict(images=4, starts=200, steps=300),
      fid=dict(weights="", images=10_000, temperature=1.0),
      semantic=dict(samples=256)))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The defaults as a config file: what ``rgflow-eval`` (without ``--config``) and
  ``rgflow-compare`` check ``--config.*`` overrides against before applying them to
  each run's own config."""
  return apply_variant(base_config(), arg)


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Minutes on a 2-core CPU: a small model and the schedule tuned on MSDS1.

  At a fixed wall-clock budget many small-batch updates beat few large ones (the
  trials: docs/benchmark.md, "Choices in the code"). The cosine schedule is sized to
  end near the 8-minute time limit, which stops the run (with a checkpoint) on a
  slower machine.
  """
  c.model.n_layers = (2,)
  c.model.n_res = (1,)
  c.model.hidden = (64,)
  c.model.mlp_depth = (1,)
  c.data.n_train = 30_000  # MSDS only
  t = c.train
  t.batch_size = 8
  t.optimizer.update(lr=3e-3, schedule="cosine", warmup_steps=200, final_lr_frac=0.02)
  t.num_steps = 15_000
  t.time_limit_s = 480.0
  t.samples.every = 4000
  return c


def smoke(c: ml_collections.ConfigDict, channels: int = 3) -> ml_collections.ConfigDict:
  """Seconds-long: a model of width 8, a few steps, everything exercised."""
  c.model.channels = channels
  c.model.n_layers = (1,)
  c.model.n_res = (1,)
  c.model.hidden = (8,)
  c.model.mlp_depth = (1,)
  c.data.n_train, c.data.n_test = 64, 32
  t = c.train
  t.batch_size = 8
  t.num_steps = 6
  t.log_every = 2
  t.test.update(every=3, images=16)
  t.checkpoint.every = 2
  t.samples.update(every=3, num=4)
  c.progress = False
  e = c.eval  # every evaluation mode at a size that runs in seconds
  e.batch_size = 8
  e.bpd.draws = 2
  e.rf.samples = 2
  e.inpaint.images, e.inpaint.starts, e.inpaint.steps = 2, 2, 1
  e.fid.images = 6
  e.semantic.samples = 16
  return c


def realnvp(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Swap the model for the multi-scale Real NVP baseline sized to the RG-Flow that
  the config held (the paper compares models of about the same parameter count)."""
  from rgflow_jax.core.rgflow import RGFlow  # noqa: PLC0415 (keeps config import light)

  rg = RGFlow.from_config({k: v for k, v in c.model.items() if k != "name"})
  small = max(rg.n_res) <= 1
  c.model = ml_collections.ConfigDict(dict(
      name="realnvp", image_size=rg.image_size, channels=rg.channels,
      num_scales=rg.num_levels, hidden=64, n_res=1 if small else 2, n_checker=3,
      n_channel=3, prior=c.model.prior, target_params=rg.count_params()))
  return c


def authors(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The authors' layer order (their code shifts the decimator, not the disentangler:
  docs/model.md, 'Layer order'), needed to load their checkpoints."""
  c.model.layer_order = "authors"
  return c


def gaussian(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The prior ablation (Table B1, App. E): a Gaussian instead of the Laplace prior."""
  c.model.prior = "gaussian"
  return c


def accel(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """One GPU or TPU host: bfloat16 conditioner matmuls (float32 accumulation), every
  loop of the model compiled once (a scan), and JAX's persistent compilation cache, so
  a restarted or preempted run does not compile again.
  The batch stays the paper's 64; scale it (and the learning rate) with the devices:
  see docs/accelerators.md."""
  if c.model.name == "rgflow":  # Real NVP has no bfloat16 mode
    c.execution.matmul_dtype = "bfloat16"
  # Every loop of an RNVP block as a lax.scan: accelerator compilers take minutes over
  # unrolled copies (docs/accelerators.md); XLA:CPU's faster unrolled code is for CPUs.
  c.execution.scan_min_layers = 1
  if c.train.num_steps > 1000:
    c.train.log_every = max(c.train.log_every, 100)
  return c


SIZES = {"cpu": cpu, "smoke": smoke}
MODIFIERS = {"authors": authors, "realnvp": realnvp, "gaussian": gaussian, "accel": accel}
# One line each, for --help (tests check every variant has one).
VARIANT_HELP = {
    "cpu": "size: minutes on a 2-core CPU",
    "smoke": "size: seconds, everything exercised (tests)",
    "authors": "the authors' layer order (to load their checkpoints)",
    "realnvp": "the Real NVP baseline at the same parameter count",
    "gaussian": "a Gaussian prior instead of the Laplace one",
    "accel": "one GPU/TPU host: bfloat16 matmuls, every loop compiled once (scan)",
}


def apply_variant(c: ml_collections.ConfigDict, arg: str, channels: int = 3):
  """Variants shared by every config file, comma-separated: a size (``cpu`` or
  ``smoke``), model changes (``authors``, ``realnvp``, ``gaussian``) and ``accel`` (one
  GPU or TPU host), e.g. ``cpu,realnvp``, ``cpu,authors`` or ``accel``."""
  tokens = [t.strip() for t in arg.split(",") if t.strip()] if arg else []
  unknown = [t for t in tokens if t not in SIZES and t not in MODIFIERS]
  sizes = [t for t in tokens if t in SIZES]
  repeated = sorted({t for t in tokens if tokens.count(t) > 1})
  if unknown or len(sizes) > 1 or repeated:
    why = (f"unknown variant {', '.join(map(repr, unknown))}" if unknown else
           f"{' and '.join(sizes)} are both sizes" if len(sizes) > 1 else
           f"{', '.join(repeated)} given twice")
    raise ValueError(f"variant {arg!r}: {why}; give at most one size of {sorted(SIZES)} "
                     f"and any of {sorted(MODIFIERS)}, comma-separated")
  for t in sizes:
    c = smoke(c, channels) if t == "smoke" else SIZES[t](c)
  for t in sorted((t for t in tokens if t in MODIFIERS), key=list(MODIFIERS).index):
    c = MODIFIERS[t](c)
  if "smoke" in sizes and "realnvp" in tokens:
    # One checkerboard and one channel-wise coupling per scale: XLA's compile time
    # grows faster than linearly in the unrolled couplings (docs/benchmark.md).
    c.model.n_checker = c.model.n_channel = 1
  if "cpu" in sizes and "realnvp" in tokens:
    # Real NVP's step is slower than RG-Flow's at the same parameter count: a cosine
    # schedule that ends inside the same 8-minute budget.
    c.train.num_steps = 7_000
  return c


def size_variant(arg: str) -> str:
  """The size part of a variant string ('' when none)."""
  return next((t for t in (arg or "").split(",") if t.strip() in SIZES), "").strip()
