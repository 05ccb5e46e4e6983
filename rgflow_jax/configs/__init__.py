"""The configs shipped with the package, by name: ``msds1``, ``msds2``, ``celeba``,
``cifar10``, ``mnist``, ``chairs``. Each module's ``get_config(variant)`` builds an
ml_collections config; the variants every config shares (``cpu``, ``smoke``,
``authors``, ``realnvp``, ``gaussian``, ``accel``) are in :mod:`rgflow_jax.configs.base`.

On the command line a config is a name and variants (``msds1:cpu``) or, as before, a
config file's path (``configs/msds1.py:cpu``, or a file of your own):
:func:`resolve` turns the first form into the second. In Python,
``get_config("msds1:cpu")`` (also ``rgflow_jax.get_config``) builds it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
  """The shipped configs' names (the modules of this folder but ``base``)."""
  return sorted(p.stem for p in FOLDER.glob("*.py") if p.stem not in ("__init__", "base"))


def resolve(arg: str) -> str:
  """``name[:variant]`` as ``<package>/configs/name.py[:variant]``; a path (anything
  with a ``/`` or ``.py``, or an existing file) is returned as it is. An unknown name is
  a ValueError that lists the names."""
  path, sep, variant = arg.partition(":")
  if "/" in path or os.sep in path or path.endswith(".py") or os.path.exists(path):
    return arg
  _check_name(path)
  return f"{FOLDER / (path + '.py')}{sep}{variant}"


def get_config(arg: str):
  """The shipped config ``name[:variant,...]`` (``"msds1"``, ``"celeba:smoke,gaussian"``)
  as the commands build it for ``--config``: an ml_collections ConfigDict."""
  name, _, variant = arg.partition(":")
  _check_name(name)
  return importlib.import_module(f"rgflow_jax.configs.{name}").get_config(variant)


def _check_name(name: str):
  if name not in names():
    raise ValueError(f"unknown config {name!r}: use one of {', '.join(names())} (e.g. "
                     "msds1:cpu) or the path of a config file (e.g. my_config.py:smoke)")


def keys_help(config=None) -> str:
  """Every config key with its value in ``config`` (default: the base config) and its
  line of :data:`rgflow_jax.configs.base.KEY_HELP`, one per line, for ``--help``."""
  from rgflow_jax.configs import base  # noqa: PLC0415 (ml_collections only when asked)
  config = base.base_config() if config is None else config
  rows = [(key, repr(_value(config, key)), text) for key, text in base.KEY_HELP.items()
          if _has(config, key)]
  width = max(len(f"{k} = {v}") for k, v, _ in rows)
  return "\n".join(f"  {f'{k} = {v}':<{width}}  {text}" for k, v, text in rows)


def _value(config, key: str):
  for part in key.split("."):
    config = config[part]
  return config.to_dict() if hasattr(config, "to_dict") else config


def _has(config, key: str) -> bool:
  try:
    _value(config, key)
    return True
  except (KeyError, AttributeError):
    return False


def help_text() -> str:
  """What ``--config`` accepts, for the entry points' ``--help``."""
  from rgflow_jax.configs import base  # noqa: PLC0415 (ml_collections only when asked)
  variants = "; ".join(f"{name}: {text}" for name, text in base.VARIANT_HELP.items())
  return (f"A config name ({', '.join(names())}) or a config file's path, then ':' and "
          f"comma-separated variants (at most one size). Variants: {variants}. "
          "E.g. msds1:cpu, celeba:accel, msds1:cpu,realnvp.")
