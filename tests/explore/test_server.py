"""The explorer's HTTP API through Flask's test client: what the page calls, answered
as JSON; refused requests are one line with HTTP 400, and the server goes on."""

import io
import json
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from helpers import random_flow
from rgflow_jax.explore import server
from rgflow_jax.explore.session import Explorer

L, C = 16, 3


@pytest.fixture(scope="module")
def client():
  flow, params = random_flow(L, C, 4, seed=2, hidden=8)
  images = np.random.default_rng(1).integers(0, 256, (2, L, L, C), dtype=np.uint8)
  explorer = Explorer(flow, params, images, rf_samples=2, inpaint_starts=2, inpaint_steps=2)
  app = server.create_app(explorer)
  return app.test_client(), explorer, app.extensions["rgflow_stats"]


def test_the_page_and_its_assets_are_served_from_the_package(client):
  http, _, _ = client
  page = http.get("/")
  assert page.status_code == 200 and b"static/explorer.js" in page.data
  for name, kind in [("explorer.js", "text/javascript"), ("explorer.css", "text/css")]:
    r = http.get(f"/static/{name}")
    assert r.status_code == 200 and r.mimetype == kind and len(r.data) > 1000
  # Nothing is fetched from elsewhere: no absolute URL in the page or its assets.
  for name in server.STATIC:
    text = server._asset(name).decode()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
  for path in ["/static/session.py", "/static/../session.py", "/static/%2e%2e%2fserver.py"]:
    assert http.get(path).status_code == 404


def test_a_view_opens_and_an_edit_returns_the_new_pixels(client):
  http, explorer, stats = client
  info = http.get("/api/info").json
  assert info["image_size"] == L and info["channels"] == C and info["test_images"] == 2
  assert np.array_equal(info["level_of_site"], explorer.flow.level_of_site())
  view = http.post("/api/open", json={"source": "test", "index": 1}).json
  assert np.array_equal(np.reshape(view["image"], (L, L, C)), explorer.test_images[1])
  assert len(view["latents"]) == L * L * C
  sel = http.post("/api/select", json={"view": view["key"], "i": 4, "j": 2}).json
  assert np.array_equal(np.reshape(sel["cone"], (L, L)), explorer.cone_mask(4, 2))
  edits = len(stats.edit_ms)
  r = http.post("/api/edit", json={"view": view["key"], "i": 4, "j": 2, "c": 1, "value": 2.0})
  assert r.status_code == 200, r.json
  assert np.array_equal(np.reshape(r.json["image"], (L, L, C)),
                        explorer.view(view["key"]).image)
  assert len(stats.edit_ms) == edits + 1 and r.json["server_ms"] > 0
  field = http.post("/api/rf", json={"i": 4, "j": 2, "c": 1}).json
  np.testing.assert_allclose(np.reshape(field["field"], (L, L)),
                             explorer.receptive_field(4, 2, 1), rtol=1e-6)
  sample = http.post("/api/open", json={"source": "sample", "temperature": 0.5,
                                        "seed": 3}).json
  mixed = http.post("/api/mix", json={"a": view["key"], "b": sample["key"],
                                      "levels_from_a": [1]}).json
  assert mixed["key"] not in (view["key"], sample["key"])
  png = http.get(f"/api/download/{view['key']}.png")
  assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.data))),
                        explorer.view(view["key"]).image)
  npz = np.load(io.BytesIO(http.get(f"/api/download/{view['key']}.npz").data))
  assert npz["latents"].shape == (L, L, C)


def test_refused_requests_get_one_line_and_the_server_goes_on(client):
  http, explorer, stats = client
  view = http.post("/api/open", json={"source": "test", "index": 0}).json
  buf = io.BytesIO()
  Image.new("RGB", (L * 2, L)).save(buf, "PNG")
  refused = stats.refused
  for method, path, kwargs, status, message in [
      ("post", "/api/upload", {"data": buf.getvalue()}, 400,
       f"the PNG is {2 * L} x {L} pixels; this model takes {L} x {L}"),
      ("post", "/api/upload", {"data": b"\0" * (5 << 20)}, 413, "larger than 4 MiB"),
      ("post", "/api/open", {"data": "not json"}, 400, "needs a JSON object body"),
      ("post", "/api/open", {"json": {"source": "file", "path": "/etc/passwd"}}, 400,
       "source must be 'test' or 'sample'"),
      ("post", "/api/open", {"json": {"source": "test", "index": "0"}}, 400,
       "index must be an integer"),
      ("post", "/api/edit", {"json": {"view": view["key"], "i": 0, "j": 0, "value": "x"}},
       400, "value must be a number"),
      ("post", "/api/edit", {"json": {"view": "nope", "i": 0, "j": 0, "value": 1}}, 400,
       "no image 'nope' on show"),
      ("post", "/api/inpaint", {"json": {"view": view["key"], "mask": [1, 0]}}, 400,
       f"mask must be a list of {L * L} zeros and ones"),
      ("get", "/api/job/j0", {}, 400, "no job 'j0'"),
      ("get", "/api/nothing", {}, 404, "no such page or API call: /api/nothing"),
  ]:
    r = getattr(http, method)(path, **kwargs)
    assert r.status_code == status and message in r.json["error"], (path, r.json)
    assert "\n" not in r.json["error"]
  assert stats.refused >= refused + 9 and stats.errors == 0
  assert http.get("/api/info").status_code == 200


def test_inpainting_is_a_job_the_page_polls(client):
  http, explorer, _ = client
  view = http.post("/api/open", json={"source": "test", "index": 0}).json
  mask = np.zeros((L, L), int)
  mask[3:6, 3:6] = 1
  job = http.post("/api/inpaint", json={"view": view["key"], "mask": mask.ravel().tolist()}
                  ).json
  assert job["total"] == 2
  for _ in range(600):
    state = http.get(f"/api/job/{job['job']}").json
    if state["state"] != "running":
      break
    time.sleep(0.1)
  assert state["state"] == "done" and state["done"] == 2, state
  assert np.isfinite(state["result"]["psnr"])
  assert http.get(f"/api/view/{state['result']['view']}").status_code == 200


def test_a_server_on_another_address_warns_and_a_local_one_does_not(client, caplog):
  _, explorer, _ = client
  web = server.start(explorer, "127.0.0.1", 0)
  try:
    with urllib.request.urlopen(web.url + "api/info", timeout=30) as r:
      assert json.loads(r.read())["image_size"] == L
  finally:
    web.stop()
  assert not [r for r in caplog.records if "anyone who can reach" in r.getMessage()]
  web = server.Server(explorer, "127.0.0.2", 0)  # another address (still loopback)
  web._server.server_close()
  assert [r for r in caplog.records if "anyone who can reach this machine" in r.getMessage()]
