# The README's commands. Everything a fresh machine needs is installed from here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster
# Python caches compiled modules (and pytest its assertion-rewritten tests) unless told not to:
# an environment that sets PYTHONDONTWRITEBYTECODE makes every process, every test worker and
# every process a test starts, compile Dagster's and the project's modules again (measured:
# 14.5 s -> 9.5 s of CPU to collect the tests, in each of make test's workers).
export PYTHONDONTWRITEBYTECODE :=
SAMPLE := data/proxywhirl
# The sample's last day, fixed: the README's and docs' commands name its days (2026-11-15..21).
SAMPLE_END := 2026-11-21

.PHONY: install run test test-slow test-docs check ui daemon sample clean e2e e2e-distributed bench bench-large docs-images

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

install: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml

$(SAMPLE)/proxies.db: | $(VENV)/.installed
	$(BIN)/export-assets sample-data --out $(SAMPLE) --end-date $(SAMPLE_END)

sample: $(SAMPLE)/proxies.db

# The sample's keys (sample-data writes them to $(SAMPLE)/.env), so the leak check scans for
# the credentials in clear text. By hand: .venv/bin/dotenv -f data/proxywhirl/.env run -- CMD
SAMPLE_ENV := $(BIN)/dotenv -f $(SAMPLE)/.env run --

run: install sample
	$(SAMPLE_ENV) $(BIN)/export-assets materialize --last-days 7 --end-date $(SAMPLE_END)

ui: install sample
	$(SAMPLE_ENV) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Schedules and sensors without the UI (the daemon alone, same instance).
daemon: install sample
	$(SAMPLE_ENV) $(BIN)/dagster-daemon run -w workspace.yaml

# Three workers on any machine: some tests wait on SQLite, subprocesses and servers, so two
# cores keep three busy (a fourth costs more CPU in start-up than it wins in overlap); each
# file runs on one worker, so a module's fixtures (a deployment written by ProxyWhirl, its
# exports) are built once.
test: install
	$(BIN)/pytest -q -m "not slow" -n 3 --dist loadfile

test-slow: install
	$(BIN)/pytest -q -m slow

# Every shell command of README.md and docs/*.md, run as written in a copy of the repo after
# `make run` (docs_tests/); the servers they start are probed and stopped.
test-docs: install
	$(BIN)/pytest -q -m docs docs_tests

# End to end on the real stack (e2e/, not part of `make test`): dagster dev + GraphQL +
# headless Chromium; then PostgreSQL, Redis and two Celery workers. Screenshots: build/e2e/.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)

$(CHROMIUM):
	@echo "installing Debian's chromium for make e2e (Playwright drives it; no browser download)"
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(VENV)/.installed-distributed: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,distributed]'
	@touch $@

e2e: install | $(CHROMIUM)
	$(BIN)/pytest -q e2e/test_ui.py

e2e-distributed: install $(VENV)/.installed-distributed
	$(BIN)/pytest -q e2e/test_distributed.py

# Benchmarks (bench/README.md): sample days cached in bench/data/, table in bench/results/latest.md.
bench: install
	$(BIN)/python bench/run.py --rows 1000000 --repeat 3

bench-large: install
	$(BIN)/python bench/run.py --rows 1000000 10000000

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow" -n 3 --dist loadfile

clean:
	rm -rf $(VENV) .dagster exports data *.egg-info

# The report images in docs/ (PDF pages and workbook sheets as a reader sees them), from the
# sample: LibreOffice lays the workbook out, Carlito has Calibri's metrics, poppler renders.
docs-images: install sample
	@command -v soffice >/dev/null && command -v pdftoppm >/dev/null && fc-match Calibri | grep -q Carlito || { \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends poppler-utils libreoffice-calc-nogui fonts-crosextra-carlito >/dev/null; }
	$(SAMPLE_ENV) $(BIN)/python docs/render_pages.py
