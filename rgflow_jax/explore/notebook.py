"""The explorer inline in a notebook: Jupyter, JupyterLab, VS Code or Colab.

    run = rgflow_jax.load("runs/msds1-cpu")
    server = explore.show(run)          # the page in the cell's output; server.url

The server runs in a thread of the kernel, on 127.0.0.1. Where the browser cannot
reach the kernel's machine directly, the page goes through the host's port proxy:
Colab's (``google.colab.output.serve_kernel_port_as_iframe``), found by itself, or
jupyter-server-proxy's with ``proxy="/proxy/{port}/"``.
"""

from __future__ import annotations

from rgflow_jax.explore import server as server_lib
from rgflow_jax.explore.session import Explorer


def _colab_output():
  try:
    from google.colab import output  # noqa: PLC0415 (only on Colab)
  except ImportError:
    return None
  return output


def show(run_or_explorer, port: int = 0, height: int = 900, proxy: str | None = None,
         warm_up: bool = True, **options) -> server_lib.Server:
  """Serve the explorer of ``run_or_explorer`` (a loaded run, or an :class:`Explorer`)
  and show its page in the cell's output; returns the running server (``stop()`` ends
  it). ``options`` go to :meth:`Explorer.for_run`."""
  from IPython.display import IFrame, display  # noqa: PLC0415 (notebooks only)
  explorer = (run_or_explorer if isinstance(run_or_explorer, Explorer)
              else Explorer.for_run(run_or_explorer, **options))
  if warm_up:
    seconds = explorer.warm_up()
    print(f"explorer: programs compiled in {seconds:.1f} s")
  server = server_lib.start(explorer, "127.0.0.1", port)
  colab = _colab_output()
  if colab is not None and proxy is None:
    colab.serve_kernel_port_as_iframe(server.port, height=str(height))
  else:
    url = proxy.format(port=server.port) if proxy else server.url
    display(IFrame(url, width="100%", height=height))
  print(f"explorer at {server.url} (server.stop() ends it)")
  return server
