# The README's two commands: `make run` (the whole stack on SQLite + the CRM sandbox) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

export API_PORT ?= 8000
export DAGSTER_PORT ?= 3000
export SANDBOX_PORT ?= 8090
export SANDBOX_CUSTOMERS ?= 1200
export PROJECT_ROOT := $(CURDIR)
export DAGSTER_HOME ?= $(CURDIR)/var/dagster
export DAGSTER_GRAPHQL_URL ?= http://127.0.0.1:$(DAGSTER_PORT)

# The sandbox runs only when no real CRM is named.
ifeq ($(strip $(ENTERPRISE_CRM_URL)),)
export ENTERPRISE_CRM_URL := http://127.0.0.1:$(SANDBOX_PORT)
RUN_PROCESSES := sandbox api dagster
else
RUN_PROCESSES := api dagster
endif

.PHONY: help install postgres run migrate test lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## Create .venv with the pinned dependencies

postgres: ## Install Debian's PostgreSQL server binaries if missing (the tests start their own server)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL from Debian's packages"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq postgresql >/dev/null; \
	fi

migrate: install ## Apply database migrations to DATABASE_URL (default: var/data/crm_integration.db)
	$(BIN)/alembic upgrade head

run: install migrate ## Run sandbox (unless ENTERPRISE_CRM_URL is set), API :8000 and Dagster :3000; Ctrl-C stops all
	@mkdir -p "$(DAGSTER_HOME)" && ln -sf "$(CURDIR)/dagster.yaml" "$(DAGSTER_HOME)/dagster.yaml"
	@echo "API http://127.0.0.1:$(API_PORT)/api/integrations/crm/customers  Dagster UI http://127.0.0.1:$(DAGSTER_PORT)"
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho -f Procfile start $(RUN_PROCESSES)

test: install postgres ## Run the test suite (real sandbox, SQLite, PostgreSQL, Dagster)
	$(BIN)/pytest

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install ## Run the benchmarks in bench/ (results in bench/results/); installs Debian's wrk
	@command -v wrk >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.customer_sync
	$(BIN)/python -m bench.api_tracing

clean: ## Remove local state (databases, Dagster home); keeps .venv
	rm -rf var
