# Targets say what they do; `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck unit bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## serve http://localhost:8000 with the defaults (in-memory broker)
	$(BIN)/python -m broadcaster $(ARGS)

test: lint typecheck unit ## run ruff, mypy --strict and the whole pytest suite

lint: $(STAMP) ## ruff
	$(BIN)/ruff check broadcaster tests bench
	$(BIN)/ruff format --check broadcaster tests bench

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

unit: $(STAMP) ## pytest (real processes, real Chromium)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) ## benchmark against the naive baseline (~4 min, needs gcc); prints the table
	$(BIN)/python -m bench.run --json bench/build/results.json

bench-quick: $(STAMP) ## a reduced benchmark, under 2 minutes
	$(BIN)/python -m bench.run --quick

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist test-artifacts
