# carepool — one entry point for set-up, the demo, tests, lint and benchmarks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench bench-tools clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) browser

# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium; browser tests will skip"; \
	  else echo "warning: chromium missing and not root; browser tests will skip"; fi; }

demo: $(STAMP)
	$(BIN)/carepool demo

test: setup
	$(BIN)/python -m pytest -n 2 -q

# The inner loop: SQLite only, without the tests marked slow (CI runs `make test`).
test-fast: $(STAMP)
	CAREPOOL_TEST_BACKENDS=sqlite $(BIN)/python -m pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/ihtp.py

# The load generator and PostgreSQL's own benchmark for benchmarks/booking.py (Debian packages).
bench-tools:
	@command -v wrk >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postgresql-client >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache carepool.db
