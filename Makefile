# Quick start: `make run` (install into .venv, run the default stress test), `make test`,
# `make readme` (every README command as written, in a fresh copy: tests/test_readme.py).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test readme bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,explore]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/stresstest run --overwrite
	@echo "stresstest is in $(VENV)/bin: 'source $(VENV)/bin/activate' puts it on PATH (README, Quick start)"

test: $(STAMP)
	$(PY) -m pytest

readme: $(STAMP)
	$(PY) -m pytest -n 0 tests/test_readme.py

bench: $(STAMP)
	$(PY) benchmarks/bench_grid.py

clean:
	rm -rf $(VENV) build *.egg-info stress.h5
