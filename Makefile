# Targets say what they do; `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
DEV := $(VENV)/.dev

.DEFAULT_GOAL := help
.PHONY: help venv run test system-deps lint typecheck unit bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# `make run` needs only the server's own dependencies; the tests need the dev tools too.
$(RUNTIME): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
		{ echo "broadcaster needs Python 3.11 or newer; '$(PYTHON)' is not. Try: make $(MAKECMDGOALS) PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV)

venv: $(DEV) ## create .venv and install the project with its dev tools

run: $(RUNTIME) ## serve http://localhost:8000 with the defaults (in-memory broker, SQLite in ./data)
	$(BIN)/python -m broadcaster $(ARGS)

test: system-deps lint typecheck unit ## install what the tests need, then ruff, mypy --strict and the whole pytest suite

# The integration tests drive real Chromium, redis-server and nginx. As root, install
# whichever is missing with apt-get; otherwise name them and the command, and stop.
SYSTEM_DEPS := chromium:/usr/bin/chromium redis-server:/usr/bin/redis-server nginx:/usr/sbin/nginx
system-deps: ## install Debian's chromium, redis-server and nginx if missing (as root)
	@missing=""; for dep in $(SYSTEM_DEPS); do \
		[ -x "$${dep#*:}" ] || missing="$$missing $${dep%%:*}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make test needs these Debian packages:$$missing. Install them: sudo apt-get install -y$$missing"; exit 1; fi; \
	echo "Installing$$missing with apt-get"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

lint: $(DEV) ## ruff
	$(BIN)/ruff check broadcaster tests bench examples
	$(BIN)/ruff format --check broadcaster tests bench examples

typecheck: $(DEV) ## mypy --strict
	$(BIN)/mypy

unit: $(DEV) ## pytest (real processes, real Chromium)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(DEV) ## benchmark against the naive baseline, M1-M5 (~15 min, needs gcc); prints the table
	$(BIN)/python -m bench.run --json bench/build/results.json

bench-quick: $(DEV) ## a reduced benchmark, under 2 minutes
	$(BIN)/python -m bench.run --quick

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist test-artifacts
