# tiktok-broker: every command a developer or CI runs. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install dev test test-fast lint lint-docker typecheck contracts check bench emulator clean \
        deps-lock deps-upgrade deps-latest

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The locks name every dependency but not our own three packages (they come from this working tree).
LOCK_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --generate-hashes --python-version 3.11 \
	--no-emit-package tiktok-broker --no-emit-package tiktok-broker-sdk --no-emit-package tiktok-broker-emulator
PACKAGES = -e ./sdk -e ./emulator -e .
# Most tests wait on servers, so test files run on several processes, each with its own redis-server; a file stays
# on one process (its module fixtures are set up once). `make test TEST_WORKERS=0` runs everything in one process.
TEST_WORKERS ?= 3
PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
# `make test` fails below this share of lines and branches covered (broker, SDK, emulator); raise it, never lower.
COVERAGE_FLOOR = 88

# Installs come from the locks only (requirements/, every package pinned with its hashes); our own package is
# then installed on top without its dependencies and without build isolation, so that nothing unpinned is fetched.
$(STAMP): requirements/dev.txt pyproject.toml sdk/pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation $(PACKAGES)
	$(PY) -m pip check
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the broker with its development tools

dev: $(STAMP) ## run broker + TikTok emulator + embedded Redis on this machine
	$(VENV)/bin/broker dev

test: $(STAMP) ## run the whole test suite (real Redis, emulator over real HTTP), with coverage and its floor
	$(PY) -m pytest -q $(PARALLEL) -m "not serial" --cov --cov-report=
	$(PY) -m pytest -q -m serial --cov --cov-append --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

test-fast: $(STAMP) ## unit and single-process tests only (no servers in other processes, no browser)
	$(PY) -m pytest -q $(PARALLEL) -m "not slow"

lint: $(STAMP) lint-docker ## ruff, and hadolint on the Dockerfile
	$(VENV)/bin/ruff check broker sdk emulator tests bench

lint-docker: $(STAMP) ## hadolint on the Dockerfile (every finding fails; ignore one only inline, with a reason)
	$(VENV)/bin/hadolint Dockerfile

typecheck: $(STAMP) ## mypy, strict on the server, the SDK and the emulator
	$(VENV)/bin/mypy

contracts: $(STAMP) ## import-linter: the layering of ARCHITECTURE.md
	$(VENV)/bin/lint-imports

check: lint typecheck contracts test ## everything CI runs

bench: $(STAMP) ## benchmarks, each reported as a ratio to a baseline measured in the same run
	$(PY) -m bench

emulator: $(STAMP) ## run only the TikTok emulator on 127.0.0.1:8081
	$(VENV)/bin/broker emulator

deps-lock: $(STAMP) ## recompile the locks after a change of dependencies in pyproject.toml (keeps other pins)
	$(LOCK_COMPILE) requirements/server.in -o requirements/server.txt
	$(LOCK_COMPILE) requirements/build.in -o requirements/build.txt
	$(LOCK_COMPILE) requirements/emulator.in -o requirements/emulator.txt
	$(LOCK_COMPILE) requirements/sdk.in -o requirements/sdk.txt
	$(LOCK_COMPILE) requirements/dev.in -o requirements/dev.txt

deps-upgrade: $(STAMP) ## move every lock to the newest releases (then run `make check` and commit the locks)
	$(LOCK_COMPILE) --upgrade requirements/server.in -o requirements/server.txt
	$(LOCK_COMPILE) --upgrade requirements/build.in -o requirements/build.txt
	$(LOCK_COMPILE) --upgrade requirements/emulator.in -o requirements/emulator.txt
	$(LOCK_COMPILE) --upgrade requirements/sdk.in -o requirements/sdk.txt
	$(LOCK_COMPILE) --upgrade requirements/dev.in -o requirements/dev.txt

deps-latest: ## lint, types and fast tests against the newest releases, in .venv-latest; reports, never fails
	@.ci/deps-latest $(PYTHON)

clean: ## remove the virtualenv, caches and local dev data
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache .hypothesis .broker-dev
