"""The explorer's answer time for a latent edit, against a full decode, on CPU.

    python benchmarks/explorer.py --workdir runs/msds1-cpu     # make demo's run: L = 32, 64
    python benchmarks/explorer.py --quick                    # seconds: the suite runs this
    python benchmarks/explorer.py --workdir runs/msds1-cpu --browser \\
        --screenshot docs/explorer/explorer.png --json docs/explorer/edit_time.json

Rows: L = 32 with the run's model and weights (or, without ``--workdir``, the model of
``--config``, msds1:cpu's by default, with random weights) and L = 64 with the same model at 64 x 64, random weights
(an edit's work does not depend on the weights' values). For each, one site of every
level is selected in turn (its one full decode, cached) and edited ``--repeats`` times
with new values, as a drag does; the table gives the median (and minimum) over all
those edits of

- ``compute``: :meth:`Explorer.edit`, the generation cone through the engine, pixels
  to uint8 on the host;
- ``server``: ``POST /api/edit`` to a server on 127.0.0.1 answered, JSON in and out
  (the image as a flat list), measured by the client;
- ``full decode``: the whole latent decoded to uint8 on the host, as an edit without
  the cone would cost;

and the share of the image's pixels each level's generation cone holds. With
``--browser`` (Debian's Chromium): the page's own time from an edit's event to its
pixels drawn on the canvas (the page's ``explorer.state.timings``), L = 32.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgflow_jax import configs, load  # noqa: E402
from rgflow_jax.cli import xla_cpu  # noqa: E402
from rgflow_jax.explore import server, session  # noqa: E402
from rgflow_jax.run import run_config  # noqa: E402


def _post(url: str, body: dict) -> dict:
  req = urllib.request.Request(url, json.dumps(body).encode(),
                               {"Content-Type": "application/json"})
  with urllib.request.urlopen(req, timeout=60) as r:
    return json.loads(r.read())


def _sites(flow):
  """One latent site of each level, away from the edges."""
  lev = flow.level_of_site()
  out = []
  for h in range(flow.num_levels):
    sites = np.argwhere(lev == h)
    out.append(tuple(int(v) for v in sites[len(sites) // 2]))
  return out


def time_edits(explorer, repeats: int) -> dict:
  """Edit, server and full-decode times (seconds) for one explorer."""
  flow = explorer.flow
  web = server.start(explorer, "127.0.0.1", 0)
  try:
    view = explorer.open_sample(1.0, 0)
    compute, http, cone_share, by_level = [], [], {}, {}
    values = np.linspace(-2.0, 2.0, repeats)
    for level, (i, j) in enumerate(_sites(flow)):
      explorer.select(view.key, i, j)
      cone_share[level] = float(explorer.cone_mask(i, j).mean())
      for v in values:
        t = time.perf_counter()
        explorer.edit(view.key, i, j, 0, float(v))
        compute.append(time.perf_counter() - t)
        by_level.setdefault(level, []).append(compute[-1])
        t = time.perf_counter()
        _post(web.url + "api/edit", {"view": view.key, "i": i, "j": j, "c": 1,
                                      "value": float(-v)})
        http.append(time.perf_counter() - t)
    full = []
    for _ in range(repeats):
      t = time.perf_counter()
      np.asarray(session._decode_uint8(flow, explorer.params, view.z))
      full.append(time.perf_counter() - t)
  finally:
    web.stop()
  return {"compute_s": compute, "server_s": http, "full_decode_s": full,
          "cone_share": cone_share,
          "compute_s_by_level": {h: statistics.median(v) for h, v in by_level.items()}}


def time_browser(explorer, repeats: int, screenshot: str | None) -> list[float]:
  """The page's event-to-pixels times (ms) for ``repeats`` edits, one at a time."""
  from playwright.sync_api import sync_playwright  # noqa: PLC0415 (the test extra)
  path = shutil.which("chromium-headless-shell") or shutil.which("chromium")
  if path is None:
    raise SystemExit("--browser needs Debian's chromium-headless-shell (make browser)")
  web = server.start(explorer, "127.0.0.1", 0)
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=path)
      page = browser.new_page(viewport={"width": 1280, "height": 900})
      page.goto(web.url)
      page.wait_for_selector("body[data-ready='1']", timeout=60_000)
      i, j = _sites(explorer.flow)[2]
      page.evaluate(f"explorer.select({{i: {i}, j: {j}, c: 0, level: 2}})")
      ms = page.evaluate(f"""async () => {{
        explorer.state.timings.length = 0;
        for (let k = 0; k < {repeats}; k++) await explorer.edit(-1.5 + 3 * k / {repeats});
        return explorer.state.timings.map(t => t.total); }}""")
      if screenshot:  # a test image (where there are), a level-2 latent hovered
        if len(explorer.test_images):
          page.evaluate("explorer.openTest(0)")
        cell = page.evaluate("levelGeometry(2).cell")
        page.hover("#level-2", position={"x": (j // 4 + 0.5) * cell,
                                         "y": (i // 4 + 0.5) * cell})
        page.wait_for_function("explorer.state.rf !== null")
        page.screenshot(path=screenshot, full_page=True)
      browser.close()
  finally:
    web.stop()
  return ms


def _ms(values) -> str:
  return f"{1e3 * statistics.median(values):.1f} ({1e3 * min(values):.1f})"


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", default=None, help="a trained msds1 run (make demo's)")
  p.add_argument("--config", default="msds1:cpu", help="the model without --workdir "
                 "(random weights), e.g. msds1 for the paper's")
  p.add_argument("--sizes", default="32,64", help="image edges, comma-separated")
  p.add_argument("--repeats", type=int, default=50, help="edits per level's site")
  p.add_argument("--browser", action="store_true", help="also time the page (Chromium)")
  p.add_argument("--screenshot", default=None, help="with --browser: a PNG of the page")
  p.add_argument("--json", default=None)
  p.add_argument("--quick", action="store_true", help="seconds: L = 32, random weights")
  args = p.parse_args(argv)
  if args.quick:
    args.sizes, args.repeats, args.workdir = "32", 3, None
  xla_cpu.tune_cpu_process()  # as rgflow-explore runs: on CPU only (see xla_cpu)
  run = load(args.workdir) if args.workdir else None
  config = run.config if run else configs.get_config(args.config)
  rows = []
  print("| L | edit: compute ms | edit: server answer ms | full decode ms | full decode / "
        "edit compute | generation cone, share of pixels by level |")
  print("|---|---|---|---|---|---|")
  for L in [int(s) for s in args.sizes.split(",")]:
    config.model.image_size = L
    flow = run_config.build_model(config)
    weights = "trained" if run and L == run.flow.image_size else "random"
    params = run.params if weights == "trained" else flow.init(jax.random.PRNGKey(0))
    explorer = (session.Explorer.for_run(run, 8) if weights == "trained"
                else session.Explorer(flow, params, rf_samples=2))
    compile_s = explorer.warm_up()
    t = time_edits(explorer, args.repeats)
    row = {"L": L, "weights": weights, "warm_up_s": compile_s,
           **{k: statistics.median(v) for k, v in t.items() if k.endswith("_s")},
           **{f"min_{k}": min(v) for k, v in t.items() if k.endswith("_s")},
           "cone_share": t["cone_share"], "compute_s_by_level": t["compute_s_by_level"],
           "edits": len(t["compute_s"])}
    row["speedup"] = row["full_decode_s"] / row["compute_s"]
    if args.browser and L == 32:
      ms = time_browser(explorer, args.repeats, args.screenshot)
      row["browser_ms"], row["min_browser_ms"] = statistics.median(ms), min(ms)
    rows.append(row)
    shares = ", ".join(f"{100 * s:.0f}%" for s in t["cone_share"].values())
    print(f"| {L} ({weights}) | {_ms(t['compute_s'])} | {_ms(t['server_s'])} | "
          f"{_ms(t['full_decode_s'])} | {row['speedup']:.1f}x | {shares} |", flush=True)
  for row in rows:
    if "browser_ms" in row:
      print(f"L = {row['L']}: from the event to the pixels drawn in Chromium, median "
            f"{row['browser_ms']:.1f} ms (min {row['min_browser_ms']:.1f})")
  result = {"rows": rows, "repeats": args.repeats, "workdir": args.workdir,
            "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__}
  if args.json:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()
