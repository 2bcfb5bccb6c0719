# feed-worker: `make run` starts the daemon, `make test` runs the whole suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export DATABASE_URL ?= postgresql://localhost/feed_worker
export AMQP_URL ?= amqp://guest:guest@localhost:5672/

.PHONY: help venv services run migrate test faults scale citus check lint typecheck promtool rules bench clean

help:
	@echo "make run     - install, migrate, start the daemon in the foreground"
	@echo "make test    - install and run the whole test suite against real services"
	@echo "make faults  - fault injection against private Postgres and RabbitMQ (not in make test)"
	@echo "make scale   - scaling tests: replicas, a RabbitMQ cluster, Citus (not in make test)"
	@echo "make citus   - build and install the vendored Citus into PostgreSQL 15 when missing"
	@echo "make check   - ruff + mypy --strict + promtool on the alert rules + the test suite"
	@echo "make bench   - benchmarks (not part of make test)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)
	@echo "installed $(BIN)/feed-worker: call it by that path, or '. $(BIN)/activate' first"

venv: $(STAMP)

services:
	@scripts/ensure-services.sh

migrate: venv services
	$(BIN)/feed-worker migrate

run: migrate
	@echo "starting the daemon; in another terminal: $(BIN)/feed-worker --help"
	exec $(BIN)/feed-worker run

# The deploy tests run promtool (tests/unit/test_deploy.py): installed here when missing.
test: venv services promtool
	$(BIN)/pytest

# Starts its own Postgres cluster and RabbitMQ node (never the shared 5432/5672 ones).
PG_BIN ?= /usr/lib/postgresql/15/bin
RABBIT_BIN ?= /usr/lib/rabbitmq/bin
faults: venv
	@test -x $(PG_BIN)/initdb || { echo "make faults: $(PG_BIN)/initdb is missing: install PostgreSQL 15 (apt-get install postgresql-15)"; exit 1; }
	@test -x $(RABBIT_BIN)/rabbitmq-server || { echo "make faults: $(RABBIT_BIN)/rabbitmq-server is missing: install RabbitMQ (apt-get install rabbitmq-server)"; exit 1; }
	FEED_WORKER_FAULTS_PG_BIN=$(PG_BIN) FEED_WORKER_FAULTS_RABBIT_BIN=$(RABBIT_BIN) $(BIN)/pytest tests/faults -s

# Builds the vendored Citus (../shared/vendor) in .cache/citus and installs it into pg_config's
# lib/share dirs when citus.so is not there; apt-get installs the build's Debian packages.
CITUS_VENDOR ?= ../shared/vendor
citus:
	@test -f "$$(pg_config --pkglibdir)/citus.so" || scripts/install-citus.sh $(CITUS_VENDOR) .cache/citus

# Starts its own RabbitMQ cluster, daemons and Citus nodes on private ports (not in make test).
scale: venv services citus
	$(BIN)/pytest tests/scale -s -p no:cacheprovider

lint: venv
	$(BIN)/ruff check worker tests

typecheck: venv
	$(BIN)/mypy worker

# promtool comes with Debian's prometheus package (installing it does not start a server).
promtool:
	@command -v promtool >/dev/null || { apt-get update -q && apt-get install -y -q prometheus; }
	@command -v promtool >/dev/null || { echo "promtool is missing: apt-get install prometheus"; exit 1; }

rules: promtool
	promtool check rules deploy/prometheus/rules.yaml
	promtool test rules deploy/prometheus/rules.test.yaml

check: lint typecheck rules test

bench: venv services
	@command -v pgloader >/dev/null || { apt-get update -q && apt-get install -y -q pgloader; }
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	$(BIN)/python -m tests.bench.pull_csv
	$(BIN)/python -m tests.bench.push
	$(BIN)/python -m tests.bench.push_latency
	$(BIN)/python -m tests.bench.pull_formats
	$(BIN)/python -m tests.bench.json_paths
	$(BIN)/python -m tests.bench.pull_spreadsheets
	$(BIN)/python -m tests.bench.api
	$(BIN)/python -m tests.bench.fleet
	$(BIN)/python -m tests.bench.joined

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
