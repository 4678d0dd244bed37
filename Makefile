# tiktok-broker: every command a developer or CI runs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install dev test lint lint-docker typecheck contracts check bench emulator clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the broker with its development tools

dev: $(STAMP) ## run broker + TikTok emulator + embedded Redis on this machine
	$(VENV)/bin/broker dev

test: $(STAMP) ## run the whole test suite (real Redis, emulator over real HTTP)
	$(PY) -m pytest -q

lint: $(STAMP) lint-docker ## ruff, and hadolint on the Dockerfile
	$(VENV)/bin/ruff check broker tests bench

lint-docker: $(STAMP) ## hadolint on the Dockerfile (every finding fails; ignore one only inline, with a reason)
	$(VENV)/bin/hadolint Dockerfile

typecheck: $(STAMP) ## mypy, strict on broker/
	$(VENV)/bin/mypy

contracts: $(STAMP) ## import-linter: the layering of ARCHITECTURE.md
	$(VENV)/bin/lint-imports

check: lint typecheck contracts test ## everything CI runs

bench: $(STAMP) ## benchmarks, each reported as a ratio to a baseline measured in the same run
	$(PY) -m bench

emulator: $(STAMP) ## run only the TikTok emulator on 127.0.0.1:8081
	$(VENV)/bin/broker emulator

clean: ## remove the virtualenv, caches and local dev data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .broker-dev
