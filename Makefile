# runway-relay: `make demo` runs the main job end to end; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck unit bench clean browser screenshots

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python -m simulator.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Every test: unit, integration (SQLite file, then PostgreSQL when reachable), end to end, and
# the dashboard in a real browser.
test: lint typecheck browser
	$(BIN)/pytest

# Debian's Chromium for the browser tests (Playwright drives it and never downloads a browser).
# Idempotent. Where it cannot be installed (not root, no apt-get, no network) the browser tests
# skip with the reason; under CI=true they fail instead.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "make browser: could not install chromium; the browser tests will say so"; \
	else echo "make browser: cannot install chromium here (needs root and apt-get)"; fi

# Retake the README's dashboard screenshots (docs/screenshots/) with the browser test.
screenshots: install browser
	RELAY_SCREENSHOTS=1 $(BIN)/pytest -q tests/browser -k delivered_task

# Benchmarks, ratios against the bare stack (not part of `make test`; see README "Performance").
# wrk comes from Debian's packages; PROFILE=1 adds py-spy (PyPI) and profiles; QUICK=1 is short;
# BENCH_ARGS passes more options (python -m bench --help).
bench: install
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } \
	  || { echo "make bench needs wrk: apt-get install wrk"; exit 2; }
	$(if $(PROFILE),$(BIN)/python -m pip install --quiet py-spy)
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(PROFILE),--profile) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .demo instance .pytest_cache .mypy_cache .ruff_cache
