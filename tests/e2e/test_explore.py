"""rgflow-explore as a process on a smoke run, driven in Debian's headless Chromium by
Playwright (pointed at the system browser: nothing is downloaded): a clicked latent's
overlay is its receptive field, a drag changes the image inside the generation cone
only and equals the full decode, mixing is eq. 15, a wrong upload is one message, a
burst of 100 edits compiles nothing and logs no error; then the exported explorer file
opens offline with its frames. Skipped, saying why, where no Chromium is installed."""

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image

import rgflow_jax
from helpers import ROOT, run_eval, smoke_config
from rgflow_jax import data
from rgflow_jax.core import cones, pixels
from rgflow_jax.paper import latents, receptive
from rgflow_jax.run import training

BROWSERS = ("chromium-headless-shell", "chromium")


def chromium() -> str:
  for name in BROWSERS:
    if path := shutil.which(name):
      return path
  why = ("no Chromium installed: apt-get install chromium-headless-shell (make browser; "
         ".ci/run installs it)")
  if os.environ.get("CI"):  # CI installs it: there, a missing browser is a failure
    pytest.fail(why)
  pytest.skip(why)


def _start_server(run_dir, log_path):
  """rgflow-explore on a free port: (process, URL) once it prints its URL."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
    proc = subprocess.Popen(
        [sys.executable, "-m", "rgflow_jax.cli.explore", "--workdir", str(run_dir),
         "--port", "0", "--test_images", "4", "--inpaint_starts", "4", "--inpaint_steps",
         "3"], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
  watchdog = threading.Timer(300, proc.kill)  # never wait forever for it
  watchdog.start()
  lines = []
  try:
    for line in proc.stdout:
      lines.append(line)
      if line.startswith("explorer at "):
        return proc, line.split()[2]
  finally:
    watchdog.cancel()
  proc.kill()
  pytest.fail(f"rgflow-explore printed no URL: {''.join(lines)}{log_path.read_text()[-3000:]}")


def _get(url):
  with urllib.request.urlopen(url, timeout=60) as r:
    return r.read()


def _canvas(page, name) -> np.ndarray:
  """The (L, L, 4) RGBA pixels of one of the page's canvases."""
  rgba = page.evaluate(f"""() => {{ const c = document.getElementById('{name}');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }}""")
  n = int(round((len(rgba) // 4) ** 0.5))
  return np.asarray(rgba, np.uint8).reshape(n, n, 4)


def _shown(page) -> np.ndarray:
  return _canvas(page, "image-data")[..., :3]


def _view_latents(url, key) -> np.ndarray:
  return np.load(io.BytesIO(_get(f"{url}api/download/{key}.npz")))["latents"][None]


def _decoded(run, z) -> np.ndarray:
  y, _ = run.flow.decode(run.params, z)
  return pixels.to_uint8_numpy(pixels.from_flow(y))[0]


def _close(got, want):
  """float32 decodes of the same latents, by the cone and by the whole flow: equal to
  one level of uint8 (rounding at quantisation steps), and nearly everywhere exactly."""
  diff = np.abs(got.astype(int) - want.astype(int))
  assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


def _settle(page):
  page.wait_for_function("!explorer.state.inFlight && !explorer.state.pending")


def test_the_explorer_in_a_browser(tmp_path):
  browser_path = chromium()
  from playwright.sync_api import sync_playwright  # noqa: PLC0415
  config = smoke_config(tmp_path)
  run_dir = tmp_path / "run"
  training.train_and_evaluate(config, run_dir)
  proc, url = _start_server(run_dir, tmp_path / "server.log")
  run = rgflow_jax.load(run_dir)
  flow, L = run.flow, run.flow.image_size
  tests = data.make_source(config.data, "test", L, flow.channels, False)
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=browser_path)
      page = browser.new_page(viewport={"width": 1280, "height": 1000})
      page_errors = []
      page.on("pageerror", lambda e: page_errors.append(str(e)))
      page.goto(url)
      page.wait_for_selector("body[data-ready='1']", timeout=60_000)
      np.testing.assert_array_equal(_shown(page), tests[0])

      # Click a latent of level 2: its receptive field is the overlay.
      i, j, c, level = 4, 8, 0, 2
      assert flow.level_of_site()[i, j] == level
      cell = page.evaluate("levelGeometry(2).cell")
      page.click("#level-2", position={"x": (j // 4 + 0.5) * cell, "y": (i // 4 + 0.5) * cell})
      page.wait_for_function(f"explorer.state.selected && explorer.state.rf && "
                             f"explorer.state.rf.i === {i} && explorer.state.rf.j === {j}")
      idx = [tuple(v) for v in receptive.latents_of_level(flow, level)].index((i, j, c))
      want = np.asarray(rgflow_jax.receptive_field(run.params, level, idx))
      got = np.asarray(page.evaluate("Array.from(explorer.state.rf.field)")).reshape(L, L)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())
      alpha = _canvas(page, "overlay-data")[..., 3].astype(int)
      assert np.abs(alpha - np.round(255 * want / want.max())).max() <= 1

      # Drag it up: the image changes inside its generation cone only, and equals the
      # full decode of the edited latents.
      before = _shown(page)
      box = page.locator("#level-2").bounding_box()
      x, y = box["x"] + (j // 4 + 0.5) * cell, box["y"] + (i // 4 + 0.5) * cell
      page.mouse.move(x, y)
      page.mouse.down()
      for dy in range(5, 80, 5):
        page.mouse.move(x, y - dy)
      page.mouse.up()
      _settle(page)
      after = _shown(page)
      key = page.evaluate("explorer.state.view.key")
      z = _view_latents(url, key)
      cone = cones.generation_cone(flow.geometry, level, (i, j))
      assert (after != before).any()
      np.testing.assert_array_equal(after[~cone], before[~cone])
      _close(after, _decoded(run, z))
      page_value = page.evaluate(f"explorer.state.view.latents[{(i * L + j) * 3 + c}]")
      assert abs(page_value - z[0, i, j, c]) < 1e-5 and abs(page_value) > 0

      # Mix test images 0 (A) and 1 (B): level 3 from A, the rest from B.
      b_key = page.evaluate("explorer.openTest(1).then(v => v.key)")
      a_key = page.evaluate("explorer.openTest(0).then(v => v.key)")
      page.select_option("#mix-b", b_key)
      for h in range(flow.num_levels):
        page.set_checked(f"#mix-levels input[data-level='{h}']", h == 3)
      page.click("#mix-go")
      page.wait_for_function(f"explorer.state.view.key !== '{a_key}'")
      z_mix = latents.mix_levels(flow, _view_latents(url, a_key), _view_latents(url, b_key), 3)
      np.testing.assert_array_equal(_view_latents(url, page.evaluate(
          "explorer.state.view.key")), np.asarray(z_mix))
      _close(_shown(page), _decoded(run, z_mix))

      # A PNG of the wrong size: one clear message on the page.
      buf = io.BytesIO()
      Image.new("RGB", (40, 40)).save(buf, "PNG")
      page.set_input_files("#upload", files=[{"name": "big.png", "mimeType": "image/png",
                                              "buffer": buf.getvalue()}])
      page.wait_for_selector("#message:not([hidden])")
      assert page.inner_text("#message") == (
          f"the PNG is 40 x 40 pixels; this model takes {L} x {L}: resize it first")

      # 100 edits in a burst: answered, nothing compiled, nothing failed.
      stats = json.loads(_get(url + "api/stats"))
      page.evaluate(f"explorer.openTest(2).then(() => explorer.select("
                    f"{{i: 12, j: 6, c: 1, level: {int(flow.level_of_site()[12, 6])}}}))")
      timings = page.evaluate("""async () => {
        const key = explorer.state.view.key, t0 = performance.now();
        const answers = await Promise.all(Array.from({length: 100}, (_, k) =>
          explorer.api('api/edit', {view: key, i: 12, j: 6, c: 1, value: k / 25 - 2})));
        return {wall_ms: performance.now() - t0, server_ms: answers.map(a => a.server_ms)};
      }""")
      after_burst = json.loads(_get(url + "api/stats"))
      assert after_burst["edits"] == stats["edits"] + 100
      assert after_burst["compiles"] == stats["compiles"], "an edit compiled a program"
      assert after_burst["errors"] == 0
      assert json.loads(_get(url + "api/info"))["image_size"] == L
      server_ms = np.asarray(timings["server_ms"])
      print(f"\nburst of 100 edits: {timings['wall_ms']:.0f} ms in all; server ms per edit "
            f"median {np.median(server_ms):.2f}, max {server_ms.max():.2f}")
      page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
      if os.environ.get("RGFLOW_EXPLORER_SCREENSHOT"):
        shutil.copy(tmp_path / "explorer.png", os.environ["RGFLOW_EXPLORER_SCREENSHOT"])
      assert not page_errors, page_errors

      # The explorer file, opened offline: every level's strongest latents and frames.
      results = run_eval(config, run_dir, "explorer")
      offline = browser.new_context(offline=True)
      page = offline.new_page()
      page.goto((run_dir / "eval" / "explorer.html").as_uri())
      found = page.evaluate("""() => Array.from(document.querySelectorAll('section.level'),
        s => ({level: +s.dataset.level,
               latents: Array.from(s.querySelectorAll('figure.latent'), f => ({
                 latent: f.dataset.latent.split(',').map(Number),
                 frames: Array.from(f.querySelectorAll('.frames img')).filter(
                   im => im.complete && im.naturalWidth > 0).length,
                 shown: f.querySelectorAll('.frames img.shown').length}))}))""")
      assert [s["level"] for s in found] == list(range(flow.num_levels))
      for s in found:
        assert [f["latent"] for f in s["latents"]] == \
            [list(t) for t in results["explorer"]["latents"][f"level{s['level']}"]]
        assert all(f["frames"] == 9 and f["shown"] == 1 for f in s["latents"])
      browser.close()
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  log = (tmp_path / "server.log").read_text()
  assert "Traceback" not in log and not [l for l in log.splitlines()
                                         if l.startswith("error")], log[-3000:]


@pytest.mark.parametrize("args,message", [
    (["--workdir", "{tmp}/none"], "error: no run folder at {tmp}/none"),
    (["--workdir", "{tmp}", "--port", "70000"], "error: --port must be in 0 .. 65535, got 70000"),
    (["--workdir", "{tmp}", "--rf_samples", "0"], "error: --rf_samples must be >= 1"),
])
def test_bad_command_lines_are_one_line(tmp_path, args, message):
  out = subprocess.run([sys.executable, "-m", "rgflow_jax.cli.explore",
                        *[a.format(tmp=tmp_path) for a in args]], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == message.format(tmp=tmp_path), out.stderr


@pytest.mark.campaign
def test_quick_benchmark_times_edits_against_the_full_decode(tmp_path, capsys):
  from benchmarks import explorer as bench  # noqa: PLC0415
  out = tmp_path / "edit_time.json"
  result = bench.main(["--quick", "--json", str(out)])
  (row,) = json.loads(out.read_text())["rows"]
  assert row == json.loads(json.dumps(result["rows"][0]))
  assert row["L"] == 32 and row["weights"] == "random" and row["edits"] == 4 * 3
  for key in ("compute_s", "server_s", "full_decode_s", "warm_up_s"):
    assert row[key] > 0, key
  assert row["server_s"] >= row["min_compute_s"]  # the answer includes the computation
  assert list(row["cone_share"].values()) == sorted(row["cone_share"].values())
  assert "| 32 (random) |" in capsys.readouterr().out
