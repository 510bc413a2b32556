# `make demo` serves the sharded demo shop; `make test` takes a fresh clone to a passing
# test suite; `make bench` prints what the profiler costs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-test

.PHONY: demo test lint bench memcached browser statsd carbon screenshot clean

DEMO_INSTALLED := $(VENV)/.installed-demo

$(DEMO_INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $(DEMO_INSTALLED)

demo: $(DEMO_INSTALLED) memcached
	$(PY) -m demo_app $(DEMO_ARGS)

screenshot: $(INSTALLED) memcached browser
	$(PY) -m demo_app.screenshot

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

# The tests start their own memcached processes: the binary must be installed.
memcached:
	@if command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing memcached with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "installing memcached with sudo apt-get"; \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached; \
	else \
		echo "memcached is not installed and cannot be installed from here."; \
		echo "Install it (Debian/Ubuntu: sudo apt-get install memcached; macOS: brew install memcached)"; \
		echo "and run make test again."; \
		exit 1; \
	fi

# The browser test drives Debian's chromium through its chromium-driver.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "installing chromium and chromium-driver with sudo apt-get"; \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "chromium is not installed and cannot be installed from here: the browser test will skip."; \
		echo "(Debian/Ubuntu: sudo apt-get install chromium chromium-driver)"; \
	fi

# The StatsD tests run Etsy's statsd (npm, on the machine's Node.js) from .node/, flushing
# to Graphite's carbon-cache (Debian graphite-carbon). Missing either, those tests skip
# (and fail under IOPROFILER_REQUIRE_STATSD=1).
STATSD_VERSION := 0.9.0
STATSD_JS := .node/node_modules/statsd/stats.js

statsd: $(STATSD_JS) carbon

$(STATSD_JS):
	@if command -v npm >/dev/null 2>&1; then \
		echo "installing statsd $(STATSD_VERSION) into .node/ with npm"; \
		npm install --prefix .node --no-audit --no-fund --omit=optional --loglevel=error \
			statsd@$(STATSD_VERSION) || echo "npm could not install statsd: the StatsD tests will skip"; \
	else \
		echo "npm is not installed: the StatsD tests will skip (Debian: apt-get install nodejs npm)"; \
	fi

carbon:
	@if [ -x /usr/bin/carbon-cache ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing graphite-carbon with apt-get"; \
		{ apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=300 install -y -qq graphite-carbon; } \
		|| echo "graphite-carbon could not be installed: the StatsD tests will skip"; \
	else \
		echo "carbon-cache is not installed: the StatsD tests will skip"; \
		echo "(Debian/Ubuntu: sudo apt-get install graphite-carbon)"; \
	fi

lint: $(INSTALLED)
	$(PY) -m ruff check ioprofiler integrations demo_app tests benchmarks
	$(PY) -m ruff format --check ioprofiler integrations demo_app tests benchmarks

test: $(INSTALLED) memcached browser statsd lint
	$(PY) -m pytest

# The benchmarks run in their own environment: SQLAlchemy 2.0 and OpenTelemetry's
# instrumentations (which refuse SQLAlchemy 2.1), so both are measured side by side.
BENCH_PY := .venv-bench/bin/python

.venv-bench/.installed-bench: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -e '.[bench]'
	touch .venv-bench/.installed-bench

bench: .venv-bench/.installed-bench memcached
	$(BENCH_PY) benchmarks/overhead.py
	$(BENCH_PY) benchmarks/middleware.py

clean:
	rm -rf $(VENV) .venv-bench .venv-sqlalchemy20 .node build dist *.egg-info
