# ComfyRouter: `make run` starts the whole system, `make test` runs the suite.
# Needs only Python 3.11+ and make; everything else is installed into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
RUNROUTER_ARGS ?=

# Prerequisites of `make test` beyond the venv (which holds Playwright, from the test extras).
CHROMIUM := /usr/bin/chromium
TEST_PREREQUISITES := $(STAMP) browser

.PHONY: setup browser run test lint format clean

setup: $(STAMP)

# Rebuilt only when the venv is missing or pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "Installing ComfyRouter and its test tools into $(VENV)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

# Debian's Chromium for the browser tests, installed when missing and we are root (CI); without it and
# without root the browser tests skip. Playwright drives it by path: no `playwright install` download.
browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	fi

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensureadmin
	exec $(BIN)/python manage.py runrouter $(RUNROUTER_ARGS)

# Tests keep their own var dir, so they never share a database or Redis socket with `make run`.
test: $(TEST_PREREQUISITES)
	COMFYROUTER_VAR_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest --durations=10 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Keeps var/ (database, secret key, admin password) except the tests' own var/test.
clean:
	rm -rf $(VENV) var/test .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
