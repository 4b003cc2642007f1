# Everything installs into .venv from the project's own files; only python3 (>= 3.11) is assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/driftwatch demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/cycle_cost.py
	$(BIN)/python bench/calibration.py

lint: $(STAMP)
	$(BIN)/ruff check driftwatch migrations tests bench
	$(BIN)/ruff format --check driftwatch migrations tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
