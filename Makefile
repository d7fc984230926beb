# Set-up and checks. Every target creates .venv on its own.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Install the CPU torch wheel this machine carries first, so that the package's
# `torch>=2.2` range is already satisfied and no CUDA build is ever pulled here.
TORCH  ?= torch==2.13.0

.PHONY: demo test check venv dev clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.base
dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/snagkg demo

# Everything: the import contracts, then every test, the slow end-to-end ones included (pyproject's
# addopts deselect them; the -m here selects them again). What .ci/run calls.
test: $(VENV)/.dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "slow or not slow"

# The edit loop: the import contracts and the fast tests (every test not marked slow), under 2 minutes.
check: $(VENV)/.dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
