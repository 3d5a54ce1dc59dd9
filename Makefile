# runway-relay: `make demo` runs the main job end to end; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lock requirements deploy-wheels demo test lint typecheck unit bench clean browser screenshots

install: $(VENV)/.installed

# uv.lock is the source of truth for every dependency (runtime and dev, with hashes); uv itself
# comes from PyPI into the venv first, so a fresh machine needs only Python. `uv sync --locked`
# fails if uv.lock is out of step with pyproject.toml, verifies each download against the lock's
# hashes, installs the project editable (tests import the tree) and keeps pip and uv
# (--inexact). After changing dependencies in pyproject.toml: `make lock`.
UV_VERSION ?= 0.13.9
export UV_PYTHON_DOWNLOADS := never

$(VENV)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --quiet --locked --inexact --extra dev --python $(BIN)/python
	touch $@

# Re-resolve uv.lock from pyproject.toml and regenerate requirements.txt from it (what PaaS
# buildpacks read; tests/deploy/test_lock.py fails when the two disagree).
lock: $(VENV)/.installed
	$(BIN)/uv lock
	$(MAKE) requirements

# requirements.txt from uv.lock, keeping its header comment (everything up to its end marker).
requirements: $(VENV)/.installed
	{ sed -n '1,/^# -- end of header --$$/p' requirements.txt; \
	  $(BIN)/uv export --quiet --frozen --format requirements-txt --no-hashes --no-editable \
	    --no-header --no-annotate --extra s3; } > requirements.txt.tmp && mv requirements.txt.tmp requirements.txt

# The deploy test (tests/deploy) builds a venv from requirements.txt alone, as a buildpack does,
# in a fresh clone, with no network: it installs from this wheelhouse, downloaded here from PyPI
# whenever requirements.txt changes (plus the build backend, to build the project itself).
DEPLOY_WHEELS := .deploy-wheels
deploy-wheels: $(DEPLOY_WHEELS)/.downloaded

$(DEPLOY_WHEELS)/.downloaded: requirements.txt pyproject.toml $(VENV)/.installed
	rm -rf $(DEPLOY_WHEELS)
	grep -v '^\.$$' requirements.txt > $(DEPLOY_WHEELS).txt
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: -d $(DEPLOY_WHEELS) \
	  -r $(DEPLOY_WHEELS).txt
	$(BIN)/python -m pip download --quiet --only-binary=:all: -d $(DEPLOY_WHEELS) \
	  'setuptools>=69' wheel
	rm -f $(DEPLOY_WHEELS).txt
	touch $@

demo: install
	$(BIN)/python -m simulator.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Every test: unit, integration (SQLite file, then PostgreSQL when reachable), end to end, and
# the dashboard in a real browser. The suite mostly waits on real processes (gunicorn, workers,
# the simulator), so it runs in TEST_WORKERS pytest-xdist processes, one test file at a time
# each (a module's stack and fixtures stay in one process); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 4
test: lint typecheck browser deploy-wheels
	$(BIN)/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

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
	rm -rf $(VENV) $(DEPLOY_WHEELS) .demo instance .pytest_cache .mypy_cache .ruff_cache
