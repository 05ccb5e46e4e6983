"""The explorer's web server: one page and a small JSON API over an :class:`Explorer`,
served by Flask (Werkzeug's threaded server) on 127.0.0.1.

    server = start(explorer, port=0)     # a thread; server.url, server.stop()
    serve(explorer, port=8765)           # the same in the foreground (rgflow-explore)

The page (``static/``, shipped in the package: nothing is fetched from elsewhere) asks
for images by the keys the server gave it, or test images by index: no request names
a file. A request the explorer refuses gets HTTP 400 with ``{"error": one line}``,
shown on the page and logged; the server keeps serving. Images travel as flat uint8
lists, latents and receptive fields as flat float lists, row-major (L, L, C).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import threading
import time

import numpy as np

from rgflow_jax.explore.session import MAX_UPLOAD_BYTES, Explorer, ExplorerError, png_bytes

log = logging.getLogger("rgflow_jax.explore")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = ("explorer.html", "explorer.js", "explorer.css")


@dataclasses.dataclass
class Stats:
  """What the server did: requests, refused ones, internal errors, edit times (ms)."""

  requests: int = 0
  refused: int = 0
  errors: int = 0
  edit_ms: list = dataclasses.field(default_factory=list)


def _asset(name: str) -> bytes:
  return importlib.resources.files("rgflow_jax.explore").joinpath("static", name).read_bytes()


def _int(body: dict, name: str, default=None) -> int:
  value = body.get(name, default)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ExplorerError(f"{name} must be an integer, got {value!r}")
  return value


def _number(body: dict, name: str, default=None) -> float:
  value = body.get(name, default)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ExplorerError(f"{name} must be a number, got {value!r}")
  return float(value)


def _flat(array, digits: int | None = None) -> list:
  a = np.asarray(array).reshape(-1)
  return (np.round(a.astype(np.float64), digits) if digits is not None else a).tolist()


def create_app(explorer: Explorer, stats: Stats | None = None):
  """The Flask app of ``explorer`` (its ``stats``: a :class:`Stats`)."""
  import flask  # noqa: PLC0415 (the [explore] extra, only when a server is made)

  app = flask.Flask("rgflow_jax.explore", static_folder=None)
  app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + (64 << 10)
  stats = stats if stats is not None else Stats()
  app.extensions["rgflow_stats"] = stats

  def body() -> dict:
    data = flask.request.get_json(silent=True)
    if not isinstance(data, dict):
      raise ExplorerError("the request needs a JSON object body")
    return data

  def view_json(view, **extra):
    return {"key": view.key, "source": view.source, "image": _flat(view.image),
            "latents": _flat(np.asarray(view.z)[0], 5), **extra}

  @app.before_request
  def count():
    stats.requests += 1

  @app.errorhandler(ExplorerError)
  def refused(e):
    stats.refused += 1
    log.warning("refused %s %s: %s", flask.request.method, flask.request.path, e)
    return {"error": str(e)}, 400

  @app.errorhandler(413)
  def too_large(_):
    stats.refused += 1
    msg = f"the upload is larger than {MAX_UPLOAD_BYTES >> 20} MiB: upload a smaller PNG"
    log.warning("refused %s: %s", flask.request.path, msg)
    return {"error": msg}, 413

  @app.errorhandler(404)
  def not_found(_):
    return {"error": f"no such page or API call: {flask.request.path}"}, 404

  @app.errorhandler(Exception)
  def failed(e):
    if hasattr(e, "code") and hasattr(e, "get_response"):  # any other HTTP error
      return {"error": str(e)}, e.code
    stats.errors += 1
    log.exception("internal error on %s", flask.request.path)
    return {"error": f"internal error ({type(e).__name__}: {e}); the server goes on"
            .splitlines()[0]}, 500

  @app.get("/")
  def page():
    return flask.Response(_asset("explorer.html"), mimetype="text/html")

  @app.get("/static/<name>")
  def static_file(name):
    if name not in STATIC:
      flask.abort(404)
    kind = {"js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
    return flask.Response(_asset(name), mimetype=kind)

  @app.get("/api/info")
  def info():
    return explorer.describe()

  @app.get("/api/stats")
  def get_stats():
    return {"requests": stats.requests, "refused": stats.refused, "errors": stats.errors,
            "compiles": explorer.compiles(), "edits": len(stats.edit_ms),
            "edit_ms": stats.edit_ms[-200:]}

  @app.post("/api/open")
  def open_view():
    b = body()
    source = b.get("source")
    if source == "test":
      view = explorer.open_test(_int(b, "index"))
    elif source == "sample":
      view = explorer.open_sample(_number(b, "temperature", 1.0), _int(b, "seed", 0))
    else:
      raise ExplorerError(f"source must be 'test' or 'sample', got {source!r}")
    return view_json(view)

  @app.post("/api/upload")
  def upload():
    return view_json(explorer.open_png(flask.request.get_data()))

  @app.get("/api/view/<key>")
  def get_view(key):
    return view_json(explorer.view(key))

  @app.post("/api/rf")
  def rf():
    b = body()
    field = explorer.receptive_field(_int(b, "i"), _int(b, "j"), _int(b, "c", 0))
    return {"field": _flat(field), "max": float(field.max())}

  @app.post("/api/select")
  def select():
    b = body()
    i, j = _int(b, "i"), _int(b, "j")
    explorer.select(str(b.get("view")), i, j)
    return {"cone": _flat(explorer.cone_mask(i, j).astype(np.uint8))}

  @app.post("/api/edit")
  def edit():
    b = body()
    t0 = time.perf_counter()
    view = explorer.edit(str(b.get("view")), _int(b, "i"), _int(b, "j"), _int(b, "c", 0),
                         _number(b, "value"))
    ms = 1e3 * (time.perf_counter() - t0)
    stats.edit_ms.append(round(ms, 3))
    return {"key": view.key, "image": _flat(view.image), "server_ms": ms}

  @app.post("/api/mix")
  def mix():
    b = body()
    levels = b.get("levels_from_a")
    if not isinstance(levels, list):
      raise ExplorerError("levels_from_a must be a list of levels")
    return view_json(explorer.mix(str(b.get("a")), str(b.get("b")), levels))

  @app.post("/api/inpaint")
  def inpaint():
    b = body()
    L = explorer.flow.image_size
    mask = b.get("mask")
    if not isinstance(mask, list) or len(mask) != L * L:
      raise ExplorerError(f"mask must be a list of {L * L} zeros and ones")
    job = explorer.start_inpaint(str(b.get("view")),
                                 np.asarray(mask, bool).reshape(L, L), _int(b, "seed", 0))
    return {"job": job.key, "total": job.total}

  @app.get("/api/job/<key>")
  def job(key):
    j = explorer.job(key)
    return {"state": j.state, "done": j.done, "total": j.total, "result": j.result,
            "error": j.error, "seconds": time.perf_counter() - j.started}

  @app.get("/api/download/<key>.png")
  def download_png(key):
    return flask.Response(png_bytes(explorer.view(key).image), mimetype="image/png",
                          headers={"Content-Disposition": f"attachment; filename={key}.png"})

  @app.get("/api/download/<key>.npz")
  def download_npz(key):
    return flask.Response(explorer.npz_bytes(key), mimetype="application/octet-stream",
                          headers={"Content-Disposition": f"attachment; filename={key}.npz"})

  return app


class Server:
  """A running explorer server: ``url``, ``port``, ``stats``, ``stop()``."""

  def __init__(self, explorer: Explorer, host: str = "127.0.0.1", port: int = 0):
    from werkzeug.serving import make_server  # noqa: PLC0415 (the [explore] extra)
    if host not in LOCAL_HOSTS:
      log.warning("serving on %s: anyone who can reach this machine can use the explorer "
                  "(bind to 127.0.0.1 to keep it local)", host)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    self.explorer = explorer
    self.stats = Stats()
    self._server = make_server(host, port, create_app(explorer, self.stats), threaded=True)
    self.host, self.port = host, self._server.server_port
    shown = f"[{host}]" if ":" in host else host
    self.url = f"http://{shown}:{self.port}/"
    self._thread = None

  def serve_forever(self):
    self._server.serve_forever()

  def start(self) -> "Server":
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                    name="rgflow-explore")
    self._thread.start()
    return self

  def stop(self):
    self._server.shutdown()
    self._server.server_close()
    if self._thread is not None:
      self._thread.join(timeout=10)


def start(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> Server:
  """The explorer served from a background thread (a notebook's, a test's)."""
  return Server(explorer, host, port).start()
