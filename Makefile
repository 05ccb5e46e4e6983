# Set-up and everyday commands. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest workers: one per core by default (CI machines have 2).
PYTEST_WORKERS ?= auto

.PHONY: test install clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) tests

clean:
	rm -rf $(VENV) .pytest_cache
