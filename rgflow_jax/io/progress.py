"""Progress bars on long work: one place that decides how they look.

``bar(iterable, enabled, **tqdm_options)`` is a tqdm bar (``tqdm.auto``: a widget in
notebooks, text elsewhere), or with ``enabled=False`` the same object switched off, so
that callers never branch on it. ``note(bar, text)`` prints a line above a bar that
is shown, and nothing when it is off. ``say(text)`` prints a status line (what the
program is doing while no bar moves, such as compiling) whether bars are on or not.
"""

from __future__ import annotations

import sys


def bar(iterable=None, enabled: bool = True, **options):
  from tqdm.auto import tqdm  # noqa: PLC0415 (tqdm.auto picks notebook or text at call time)
  return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **options)


def note(progress_bar, text: str):
  if not progress_bar.disable:
    progress_bar.write(text)


def say(text: str, enabled: bool = True):
  if enabled:
    print(text, file=sys.stderr, flush=True)
