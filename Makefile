# fnd — the two commands that matter: `make run` and `make test` (both install first).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= $(or $(FND_VENV),.venv)
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FND := $(VENV)/bin/fnd
# The install is redone only when the lock or the project metadata change.
STAMP := $(VENV)/.fnd-installed

.PHONY: help install run test test-fast lint format bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip==26.3"
	$(PIP) install --quiet -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	@touch $@

install: $(STAMP)  ## Create the venv and install the pinned lock (idempotent)

run: $(STAMP)  ## Start the database (embedded unless FND_DATABASE_URL), migrate, print how to connect
	$(FND) db upgrade
	@echo
	@echo "fnd's database is ready. Connect with:"
	@echo "  $$($(FND) db psql 2>/dev/null)"
	@echo "Try: select * from fnd.model_leaderboard;   Stop it: $(FND) db stop"

test: $(STAMP)  ## Run every test that can run on this machine
	$(PY) -m pytest

test-fast: $(STAMP)  ## Skip the slow tests
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## Run the benchmarks (prints figures; slow)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:  ## Remove caches (keeps .venv and FND_HOME data)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
