# The two commands of the quick start: `make run` and `make test`. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: run test test-containers clean schemas openapi bench

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --frozen --all-packages --quiet
	@touch $@

run: $(STAMP)
	$(UV) run --frozen python -m mfaplane_devstack run

test: $(STAMP)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-containers: $(STAMP)
	$(UV) run --frozen python -m mfaplane_devstack containers -- $(PYTEST_ARGS)

schemas: $(STAMP)
	$(UV) run --frozen python -m mfaplane_contracts.generate

openapi: $(STAMP)
	$(UV) run --frozen python -m mfaplane_gateway openapi > services/gateway/openapi.json

# Benchmarks against the embedded servers (or external ones, like the tests); one table, JSON in bench/results/.
# One scenario with its own sizes: make bench BENCH_ARGS="bulk --users 2000"; a smoke run: BENCH_ARGS=--quick
bench: $(STAMP)
	$(UV) run --frozen python -m bench $(BENCH_ARGS)

clean:
	rm -rf .data
