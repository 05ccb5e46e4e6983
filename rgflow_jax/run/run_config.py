"""A run's config: checked before anything starts, and compared with the run it resumes.

- :func:`validate_config`: one-line errors for values that would otherwise fail deep
  inside JAX; :func:`build_model`, :func:`param_dtype`.
- :func:`check_resume_compatible`: a resumed run must share the saved run's model, seed,
  batch, schedule and data (else it would silently be another run); how the model is
  executed and where the data live may change, and other changes are logged.
- :func:`upgrade_saved_config`: a config.json written by an earlier version, in today's
  layout; every reader of a saved config goes through it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import jax
import jax.numpy as jnp
import ml_collections

from rgflow_jax.configs import base
from rgflow_jax.core import execution, registry
from rgflow_jax.core.errors import RGFlowError
from rgflow_jax.io import metrics, multihost, storage
from rgflow_jax.run import jit_steps

log = logging.getLogger(__name__)


class TrainingError(RGFlowError, RuntimeError):
  """The run cannot go on; the message says why and what to do."""


class ConfigError(RGFlowError, ValueError):
  """A config value that cannot work; the message names the key and the values allowed
  (the commands exit with status 2, as for a bad command line)."""


# ------------------------------------------------------------------- building
def build_model(config):
  """The flow named by ``config.model.name`` ('rgflow' or 'realnvp')."""
  return registry.build(config.model)


def param_dtype(config):
  if config.dtype not in ("float32", "float64"):
    raise ValueError(f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}")
  if config.dtype == "float64" and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
  return jnp.dtype(config.dtype)


def validate_config(config):
  """Plain one-line errors for values that would otherwise fail deep inside JAX."""
  t, o, ck, h = config.train, config.train.optimizer, config.train.checkpoint, config.hosts
  checks = [
      (t.batch_size >= 1, "config.train.batch_size must be >= 1"),
      (t.num_steps >= 1, "config.train.num_steps must be >= 1"),
      (o.lr > 0 and math.isfinite(o.lr), "config.train.optimizer.lr must be a positive "
       "number"),
      (o.weight_decay >= 0, "config.train.optimizer.weight_decay must be >= 0"),
      (o.grad_clip > 0, "config.train.optimizer.grad_clip must be > 0"),
      (o.warmup_steps >= 0, "config.train.optimizer.warmup_steps must be >= 0"),
      (ck.every >= 1, "config.train.checkpoint.every must be >= 1"),
      (t.test.every >= 1, "config.train.test.every must be >= 1"),
      (t.log_every >= 1, "config.train.log_every must be >= 1"),
      (config.eval.batch_size >= 1, "config.eval.batch_size must be >= 1"),
      (t.max_nonfinite >= 1, "config.train.max_nonfinite must be >= 1"),
      (ck.keep >= 1, "config.train.checkpoint.keep must be >= 1 (the run resumes from its "
       "latest checkpoint)"),
      (t.test.images >= 1, "config.train.test.images must be >= 1 (test bits/dim of no "
       "image would rank as the best)"),
      (t.samples.every >= 0, "config.train.samples.every must be >= 0 (0: no sample "
       "grids)"),
      (t.samples.num >= 1 or not t.samples.every,
       "config.train.samples.num must be >= 1, or set config.train.samples.every=0"),
      (t.time_limit_s >= 0 and math.isfinite(t.time_limit_s),
       "config.train.time_limit_s must be >= 0 (0: no limit)"),
      (h.heartbeat_timeout_s >= 1 and h.init_timeout_s >= 1,
       "config.hosts.heartbeat_timeout_s and config.hosts.init_timeout_s must be >= 1 "
       "(seconds)"),
      (ck.lock_lease_s >= 1 and math.isfinite(ck.lock_lease_s),
       "config.train.checkpoint.lock_lease_s must be >= 1 (seconds a remote run lock "
       "lasts unrenewed)"),
      (config.execution.matmul_precision in jit_steps.MATMUL_PRECISIONS,
       f"config.execution.matmul_precision must be one of {jit_steps.MATMUL_PRECISIONS}"),
      (config.dtype in ("float32", "float64"),
       f"config.dtype must be 'float32' or 'float64', got {config.dtype!r}"),
      (o.schedule in ("constant", "cosine"),
       f"config.train.optimizer.schedule must be 'constant' or 'cosine', got "
       f"{o.schedule!r}"),
  ]
  for ok, msg in checks:
    if not ok:
      raise ConfigError(msg)
  if h.coordinator_address:
    try:
      multihost.parse_address(h.coordinator_address)
    except multihost.DistributedError as e:
      raise ConfigError(f"config.hosts.coordinator_address: {e}") from None
  try:  # their own one-line errors
    execution.Execution.from_config(config.execution)
    build_model(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None


# What a resumed run must share with the run in its workdir (section names, or dotted
# keys inside a section). Everything else may change on resume (learning rate,
# num_steps, intervals, time limit, ...) and is logged.
MODEL_KEYS_THAT_MATTER = ("model", "dtype")
# What evaluating a run needs of the config given: its model, and the data set it was
# trained on (other images: config.eval.bpd.images).
EVAL_KEYS_THAT_MATTER = MODEL_KEYS_THAT_MATTER + ("data.name",)
RESUME_KEYS_THAT_MATTER = MODEL_KEYS_THAT_MATTER + (
    "seed", "data", "train.batch_size", "train.optimizer.schedule",
    "train.optimizer.warmup_steps", "train.optimizer.final_lr_frac")
# Free to differ even under those: how the model is executed and evaluated, and where
# the data live (sections).
FREE_SECTIONS = ("execution", "eval", "data.location")
# Keys added after runs existed, and the value those runs had.
VALUES_BEFORE_KEY_EXISTED = {"model.layer_order": "paper"}


def upgrade_saved_config(saved: dict) -> dict:
  """A saved config.json (as a dict) in today's layout: the execution options, once
  keys of ``model``, in their own ``execution`` section; the keys of the flat layout in
  their sections (``base.MOVED_KEYS``; ``base.DROPPED_KEYS`` left out); a key the run's
  version did not have, at the value the run had (``VALUES_BEFORE_KEY_EXISTED``), else at
  today's default (:func:`rgflow_jax.configs.base.base_config`). The input is not
  changed. The one reader of saved configs' older forms: the rest of the library reads
  today's keys only."""
  saved = json.loads(json.dumps(saved))
  model = saved.setdefault("model", {})
  model.setdefault("name", "rgflow")  # the one model before Real NVP was added
  if "execution" not in saved:
    saved["execution"] = {k: model.pop(k) for k in execution.FIELDS if k in model}
  for old, new in base.MOVED_KEYS.items():
    section, _, leaf = old.rpartition(".")
    holder = saved.get(section, {}) if section else saved
    if leaf in holder:
      *parents, name = new.split(".")
      node = saved
      for part in parents:
        node = node.setdefault(part, {})
      node.setdefault(name, holder.pop(leaf))
  for old in base.DROPPED_KEYS:
    section, _, leaf = old.rpartition(".")
    saved.get(section, {}).pop(leaf, None)
  model_fields = {f.name for f in dataclasses.fields(
      registry.MODELS.get(model["name"], registry.RGFlow))}
  for key, value in VALUES_BEFORE_KEY_EXISTED.items():
    section, leaf = key.split(".")
    if section != "model" or leaf in model_fields:  # a field of the saved run's model
      saved.setdefault(section, {}).setdefault(leaf, value)
  defaults = json.loads(base.base_config().to_json())
  for key, value in defaults.items():
    if isinstance(value, dict) and key != "model":
      _fill(saved.setdefault(key, {}), value)
    elif not isinstance(value, dict):
      saved.setdefault(key, value)
  return saved


def _fill(saved: dict, defaults: dict) -> None:
  """The keys of ``defaults`` that ``saved`` lacks, at any depth, set to their default."""
  for leaf, v in defaults.items():
    if isinstance(v, dict):
      _fill(saved.setdefault(leaf, {}), v)
    else:
      saved.setdefault(leaf, v)


def read_saved_config(workdir) -> dict | None:
  """The run's config.json in today's layout, or None where the folder has none; a
  file that is not a saved config is a one-line :class:`~rgflow_jax.io.storage.RunFileError`."""
  path = storage.as_path(workdir) / "config.json"
  if not path.exists():
    return None
  saved = storage.read_json(path)
  problem = _saved_config_problem(saved)
  if problem:
    raise storage.RunFileError(f"{path}: {problem}; restore it from a copy, or delete it "
                               "and give the run's config on the command line")
  return upgrade_saved_config(saved)


def saved_config(workdir):
  """The run's own config (its config.json) as a ConfigDict; FileNotFoundError where the
  folder has none."""
  saved = read_saved_config(workdir)
  if saved is None:
    raise FileNotFoundError(f"{workdir} has no config.json: is it a run folder written "
                            "by rgflow-train?")
  return ml_collections.ConfigDict(saved)


def _saved_config_problem(saved) -> str | None:
  """What makes ``saved`` not a config.json that training writes (None if nothing)."""
  if not isinstance(saved, dict):
    return f"not a JSON object but a {type(saved).__name__}"
  for section in ("model", "data", "execution", "train", "eval", "hosts"):
    if section in saved and not isinstance(saved[section], dict):
      return f"\"{section}\" is {saved[section]!r}, not a JSON object"
  name = saved.get("model", {}).get("name", "rgflow")
  if name not in registry.MODELS:
    return f"\"model.name\" is {name!r}, not one of {sorted(registry.MODELS)}"
  flat = metrics.flatten(saved)
  for key in ("ckpt_every", "eval_every", "num_steps", "batch_size", "seed",
              "train.checkpoint.every", "train.test.every", "train.num_steps",
              "train.batch_size"):
    value = flat.get(key)
    if key in flat and (not isinstance(value, int) or isinstance(value, bool)):
      return f"\"{key}\" is {value!r}, not an integer"
  return None


def with_overrides(config, overrides: dict):
  """``config`` (unlocked) with ``overrides`` (``{dotted key: value}``) set in place;
  a key the config lacks is a ConfigError naming it."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    try:
      for part in parents:
        node = node[part]
      known = leaf in node
    except (KeyError, TypeError):
      known = False
    if not known:
      raise ConfigError(f"no config key {key}")
    node[leaf] = value
  return config


def check_resume_compatible(workdir, config, keys=RESUME_KEYS_THAT_MATTER,
                            use: str = "resume"):
  """Refuse, in one line, a config that differs from the saved run's in ``keys`` (a
  section like ``model`` or a dotted key like ``data.name``: the model, and for
  training also the seed, batch, schedule and data: a resumed run with another of these
  would silently be a different run). When resuming, log the other changes."""
  saved_path = storage.as_path(workdir) / "config.json"
  saved = read_saved_config(workdir)
  if saved is None:
    return
  saved = metrics.flatten(saved)
  now = metrics.flatten(json.loads(config.to_json()))
  changed = sorted(k for k in set(saved) | set(now)
                   if saved.get(k) != now.get(k) and not _under(k, FREE_SECTIONS))
  for key in changed:
    if _under(key, keys):
      fix = ("train in a new --workdir" if use == "resume" else
             "give other images with --config.eval.bpd.images=FILE.npz")
      raise TrainingError(
          f"{workdir} holds a run with a different config.{key} ({saved.get(key)} there, "
          f"{now.get(key)} now): {use} it with its own config ({saved_path}) or {fix}")
  if changed and use == "resume":
    log.warning("resuming %s with changed settings: %s", workdir,
                ", ".join(f"{k} {saved.get(k)} -> {now.get(k)}" for k in changed))


def _under(key: str, names) -> bool:
  """Whether the dotted ``key`` is one of ``names`` or inside one of them (a section)."""
  return any(key == n or key.startswith(n + ".") for n in names)


def reference_curves(config) -> dict:
  refs = config.train.reference_curve or {}
  return {label: (list(c["minutes"]), list(c["bpd"])) for label, c in refs.items()}
