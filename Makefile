# Set-up and everyday commands. Every target creates the venv and installs what it needs.
#   make test                       the suite without its fault campaigns, in .venv with
#                                   python3 (-m "not campaign")
#   make test PYTHON=python3.12     the same with another interpreter (and its newest JAX)
#   make test-all                   the whole suite, fault campaigns included (what CI runs)
#   make test-fast                  the suite without its end-to-end tier, tests/e2e/
#                                   (-m "not e2e")
#   make browser                    Debian's headless Chromium for the explorer's browser
#                                   test (make test installs it where it can)
#   make check-accel PYTHON=python3.12  TPU and GPU targets compiled on this CPU
#                                   (docs/accelerators.md)
#   make test-fast FLOOR=1 PYTHON=python3.11 VENV=.venv-floor
#                                   on the declared floor: every runtime dependency at its
#                                   lower bound in requirements.txt (what .ci/run does)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest workers: one per core by default (CI machines have 2); idle workers take
# pending tests from busy ones (worksteal), so one long test does not hold the end.
PYTEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal
VERSIONS := $(PY) -c "import sys, jax, numpy; print(f'suite on Python {sys.version.split()[0]}, JAX {jax.__version__}, numpy {numpy.__version__}')"
# FLOOR=1: requirements.txt's lower bounds as exact pins (extras dropped: pip refuses
# them in constraints), and those of the optional extras' packages the suite tests
# (FLOOR_EXTRAS, read from requirements-test.txt).
FLOOR ?=
FLOOR_EXTRAS := flask flax
CONSTRAINTS := $(if $(FLOOR),-c $(VENV)/floor-constraints.txt)

DEMO_CONFIG ?= msds1:cpu
DEMO_DIR ?= runs/msds1-cpu

# The accelerator check: TPU and GPU targets compiled on this CPU (no accelerator
# needed), in a venv of its own with jax[tpu] (libtpu) and JAX's CUDA plugin at the
# same version as jaxlib (without the CUDA libraries: compiling needs none), so that
# the suite's venv stays CPU-only.
ACCEL_VENV ?= .venv-accel
ACCEL_JSON ?= $(ACCEL_VENV)/check-accel.json

.PHONY: test test-all test-fast test-e2e demo install clean check-accel browser

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	sed -E -e 's/\[[^]]*\]//' -e 's/>=/==/' requirements.txt > $(VENV)/floor-constraints.txt
	for p in $(FLOOR_EXTRAS); do grep -E "^$$p>=" requirements-test.txt | sed 's/>=/==/'; \
	  done >> $(VENV)/floor-constraints.txt
	$(PY) -m pip install --quiet -r requirements-test.txt $(CONSTRAINTS)
	touch $@

install: $(VENV)/.installed

$(ACCEL_VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(ACCEL_VENV)
	$(ACCEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ACCEL_VENV)/bin/python -m pip install --quiet -r requirements.txt "jax[tpu]"
	v=$$($(ACCEL_VENV)/bin/python -c "import jaxlib; print(jaxlib.__version__)") && \
	  $(ACCEL_VENV)/bin/python -m pip install --quiet "jax-cuda13-plugin==$$v" \
	    "jax-cuda13-pjrt==$$v"
	touch $@

# Compiles paper-CelebA's and paper-MSDS's :accel training and evaluation steps for one
# Colab TPU v5e chip, two pod slices and one H100, with their memory per chip; then
# paper-CelebA at batch 128 on one v5e chip. Fails if a target does not compile or a
# batch does not fit (docs/accelerators.md).
check-accel: $(ACCEL_VENV)/.installed
	$(ACCEL_VENV)/bin/python benchmarks/compile_time.py --check --json $(ACCEL_JSON) \
	  --targets tpu:v5e:1x1,tpu:v5e:2x4,tpu:v6e:2x2,gpu:h100 \
	  --configs celeba:accel,msds1:accel --programs train,eval
	$(ACCEL_VENV)/bin/python benchmarks/compile_time.py --check --targets tpu:v5e:1x1 \
	  --configs celeba:accel --programs train --batch 128

# Debian's headless Chromium for the explorer's browser test (tests/e2e/test_explore.py),
# which Playwright drives as it is (no browser download). Installed where apt-get can
# (as root); elsewhere the test says it is skipped and why.
browser:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq chromium-headless-shell >/dev/null; } || \
	  echo "note: no Chromium (apt-get install chromium-headless-shell): the browser test is skipped"

test: install browser
	@$(VERSIONS)
	$(PYTEST) -m "not campaign" tests

test-all: install browser
	@$(VERSIONS)
	$(PYTEST) tests

test-fast: install
	@$(VERSIONS)
	$(PYTEST) -m "not e2e" tests

test-e2e: install browser
	@$(VERSIONS)
	$(PYTEST) -m e2e tests

# Trains the CPU-sized MSDS1 model for 8 minutes in all (a rerun finds them used and
# trains nothing more),
# then writes test bits/dim, samples, receptive fields, traversals, mixing, inpainting
# and the BPD curve to DEMO_DIR/eval.
demo: install
	$(PY) -m rgflow_jax.cli.train --config $(DEMO_CONFIG) --workdir $(DEMO_DIR)
	$(PY) -m rgflow_jax.cli.eval --workdir $(DEMO_DIR) --mode all --quick

clean:
	rm -rf $(VENV) .pytest_cache
