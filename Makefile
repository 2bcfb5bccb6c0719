# feed-worker: `make run` starts the daemon, `make test` runs the whole suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export DATABASE_URL ?= postgresql://localhost/feed_worker
export AMQP_URL ?= amqp://guest:guest@localhost:5672/

.PHONY: help venv services run migrate test check lint typecheck bench clean

help:
	@echo "make run     - install, migrate, start the daemon in the foreground"
	@echo "make test    - install and run the whole test suite against real services"
	@echo "make check   - ruff + mypy --strict + the test suite"
	@echo "make bench   - benchmarks (not part of make test)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

services:
	@scripts/ensure-services.sh

migrate: venv services
	$(BIN)/feed-worker migrate

run: migrate
	exec $(BIN)/feed-worker run

test: venv services
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check worker tests

typecheck: venv
	$(BIN)/mypy worker

check: lint typecheck test

bench: venv services
	@command -v pgloader >/dev/null || { apt-get update -q && apt-get install -y -q pgloader; }
	$(BIN)/python -m tests.bench.pull_csv
	$(BIN)/python -m tests.bench.push
	$(BIN)/python -m tests.bench.pull_formats

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
