# Set-up and everyday commands. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest workers: one per core by default (CI machines have 2); idle workers take
# pending tests from busy ones (worksteal), so one long test does not hold the end.
PYTEST_WORKERS ?= auto

DEMO_CONFIG ?= configs/msds1.py:cpu
DEMO_DIR ?= runs/msds1-cpu

.PHONY: test demo install clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal tests

# Trains the CPU-sized MSDS1 model for 8 minutes (resuming if DEMO_DIR has a run),
# then writes test bits/dim, samples, receptive fields, traversals, mixing, inpainting
# and the BPD curve to DEMO_DIR/eval.
demo: install
	$(PY) train.py --config $(DEMO_CONFIG) --workdir $(DEMO_DIR)
	$(PY) eval.py --config $(DEMO_CONFIG) --workdir $(DEMO_DIR) --mode all --draws 2 \
	  --inpaint_images 2 --inpaint_starts 100

clean:
	rm -rf $(VENV) .pytest_cache
