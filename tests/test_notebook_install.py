"""The notebook's install decision (its cell defining ``choose_install``, read from the
notebook) over faked environments: today's Colab GPU and TPU runtimes, bare machines,
old drivers."""

import nbformat
import pytest

from helpers import ROOT

URL = "https://github.com/rgflow-jax/rgflow-jax"
PKG = f"rgflow-jax[explore] @ git+{URL}"
# Colab's preinstalled JAX on its GPU and TPU runtimes (a plugin or libtpu beside it).
COLAB_GPU = {"jax": "0.12.0", "jaxlib": "0.12.0", "jax-cuda12-plugin": "0.12.0",
             "jax-cuda12-pjrt": "0.12.0", "numpy": "2.3.0"}
COLAB_TPU = {"jax": "0.11.2", "jaxlib": "0.11.2", "libtpu": "0.0.40"}
CPU_ONLY = {"jax": "0.12.0", "jaxlib": "0.12.0"}


@pytest.fixture(scope="module")
def choose_install():
  nb = nbformat.read(ROOT / "notebooks" / "rgflow_jax.ipynb", as_version=4)
  cells = [c.source for c in nb.cells if c.cell_type == "code"
           and "def choose_install(" in c.source]
  assert len(cells) == 1
  namespace = {}
  exec(compile(cells[0], "rgflow_jax.ipynb", "exec"), namespace)  # noqa: S102  (its own cell)
  return namespace["choose_install"]


@pytest.mark.parametrize("env,want,pins,why", [
    # No accelerator: the package alone, JAX from pip (CPU).
    (dict(driver=None, device_files=["/dev/null", "/dev/vfio/vfio"], installed={}),
     PKG, [], "no GPU or TPU found"),
    # A GPU with a driver older than CUDA 13's 580: CUDA 12.
    (dict(driver="575.57.08", device_files=[], installed=CPU_ONLY),
     f"rgflow-jax[cuda12,explore] @ git+{URL}", [], "driver 575.57.08: JAX with CUDA 12"),
    (dict(driver="580.65.06", device_files=[], installed={}),
     f"rgflow-jax[cuda13,explore] @ git+{URL}", [], "CUDA 13"),
    (dict(driver="470.256.02", device_files=[], installed={}),
     PKG, [], "older than 525"),
    # TPU v4 and older: /dev/accel<n>; v5e, v5p, v6e: /dev/vfio/<n>.
    (dict(driver=None, device_files=["/dev/accel0", "/dev/accel1"], installed={}),
     f"rgflow-jax[tpu,explore] @ git+{URL}", [], "TPU device files"),
    (dict(driver=None, device_files=["/dev/vfio/0", "/dev/vfio/vfio"], installed=CPU_ONLY),
     f"rgflow-jax[tpu,explore] @ git+{URL}", [], "TPU device files"),
    # Colab's preinstalled accelerator JAX is kept, pinned.
    (dict(driver="550.54.15", device_files=[], installed=COLAB_GPU),
     PKG, ["jax==0.12.0", "jaxlib==0.12.0"], "keeping the installed JAX 0.12.0 (jax-cuda12"),
    (dict(driver=None, device_files=["/dev/vfio/0"], installed=COLAB_TPU),
     PKG, ["jax==0.11.2", "jaxlib==0.11.2"], "keeping the installed JAX 0.11.2 (libtpu)"),
    (dict(driver="580.82.07", device_files=[],
          installed={"jax": "0.10.2", "jaxlib": "0.10.2+cuda12.cudnn91"}),
     PKG, ["jax==0.10.2", "jaxlib==0.10.2+cuda12.cudnn91"], "jaxlib 0.10.2+cuda12"),
    # ... unless it is older than the package's floor: replaced by the hardware's extra.
    (dict(driver="580.82.07", device_files=[],
          installed={"jax": "0.4.33", "jaxlib": "0.4.33", "jax-cuda12-plugin": "0.4.33"}),
     f"rgflow-jax[cuda13,explore] @ git+{URL}", [], "the installed JAX 0.4.33 is older than 0.10.2"),
])
def test_the_install_choice(choose_install, env, want, pins, why):
  requirement, constraints, reason = choose_install(URL, False, **env)
  assert (requirement, constraints) == (want, pins)
  assert why in reason


def test_nothing_is_installed_where_rgflow_jax_imports(choose_install):
  assert choose_install(URL, True, "580.1", ["/dev/vfio/0"], COLAB_GPU)[0] is None
