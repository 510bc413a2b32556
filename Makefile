# `make demo` serves the sharded demo shop; `make test` takes a fresh clone to a passing
# test suite; `make bench` prints what the profiler costs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-test

.PHONY: demo test lint bench bench-callsite memcached browser statsd carbon screenshot clean coexist peer

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

# pip install -e . also builds the optional accelerators (ioprofiler/_speedups.c, _patch.c).
$(INSTALLED): pyproject.toml ioprofiler/_speedups.c ioprofiler/_patch.c ioprofiler/_recorders.c ioprofiler/_tally.c ioprofiler/_slots.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

# Debian packages are installed by .ci/apt-install, which waits for another apt-get or
# dpkg to finish (up to APT_LOCK_TIMEOUT seconds) rather than failing on its lock.
APT_INSTALL := .ci/apt-install

# The tests start their own memcached processes: the binary must be installed.
memcached:
	@if command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ]; then \
		true; \
	else \
		echo "installing memcached with apt-get"; \
		$(APT_INSTALL) memcached || { \
			echo "memcached is not installed and could not be installed (above)."; \
			echo "Install it (Debian/Ubuntu: sudo apt-get install memcached; macOS: brew install memcached)"; \
			echo "and run make test again."; \
			exit 1; }; \
	fi

# The browser test drives Debian's chromium through its chromium-driver. When they cannot
# be installed the browser test skips, saying why, unless IOPROFILER_REQUIRE_BROWSER=1 (CI).
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
BROWSER_PACKAGES ?= chromium chromium-driver

browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then \
		true; \
	else \
		echo "installing $(BROWSER_PACKAGES) with apt-get"; \
		if $(APT_INSTALL) $(BROWSER_PACKAGES); then \
			true; \
		elif [ "$$IOPROFILER_REQUIRE_BROWSER" = 1 ]; then \
			echo "$(BROWSER_PACKAGES) could not be installed (above), and IOPROFILER_REQUIRE_BROWSER=1 requires them"; \
			exit 1; \
		else \
			echo "$(BROWSER_PACKAGES) could not be installed (above): the browser test will skip."; \
		fi; \
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
	else \
		echo "installing graphite-carbon with apt-get"; \
		$(APT_INSTALL) graphite-carbon \
		|| echo "graphite-carbon could not be installed (above): the StatsD tests will skip"; \
	fi

lint: $(INSTALLED)
	$(PY) -m ruff check ioprofiler integrations demo_app tests benchmarks
	$(PY) -m ruff format --check ioprofiler integrations demo_app tests benchmarks

test: $(INSTALLED) memcached browser statsd lint
	$(PY) -m pytest

# The benchmarks run in their own environment: SQLAlchemy 2.0 and OpenTelemetry's
# instrumentations (which refuse SQLAlchemy 2.1), so both are measured side by side.
BENCH_PY := .venv-bench/bin/python

.venv-bench/.installed-bench: pyproject.toml ioprofiler/_speedups.c ioprofiler/_patch.c ioprofiler/_recorders.c ioprofiler/_tally.c ioprofiler/_slots.h
	$(PYTHON) -m venv .venv-bench
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -e '.[bench]'
	touch .venv-bench/.installed-bench

# versions.py: instructions added per call on 3.10 to 3.13 (pyenv's, in .venv-py3.X, made
# when missing), idle and recording, counted by callgrind (needs valgrind).
bench: .venv-bench/.installed-bench memcached
	$(BENCH_PY) benchmarks/overhead.py
	$(BENCH_PY) benchmarks/middleware.py
	$(BENCH_PY) benchmarks/asgi.py
	PYTHONPATH=. $(BENCH_PY) benchmarks/recorder.py
	$(BENCH_PY) benchmarks/top_log.py
	$(BENCH_PY) benchmarks/roundtrips.py
	$(BENCH_PY) benchmarks/integrations.py
	$(BENCH_PY) benchmarks/findings.py
	$(BENCH_PY) benchmarks/versions.py
	$(BENCH_PY) benchmarks/export.py

# Instructions per recorded call under valgrind's callgrind (repeatable on a loaded machine):
# the callsite lookup compiled and pure, per scenario. Needs valgrind; takes minutes.
bench-callsite: .venv-bench/.installed-bench memcached
	$(BENCH_PY) benchmarks/callsite_instructions.py

# OpenTelemetry's and ddtrace's instrumentations beside ioprofiler, both install orders, in
# their own environment (OpenTelemetry's SQLAlchemy instrumentation refuses SQLAlchemy 2.1).
COEXIST_PY := .venv-coexist/bin/python

.venv-coexist/.installed-coexist: pyproject.toml ioprofiler/_speedups.c ioprofiler/_patch.c ioprofiler/_recorders.c ioprofiler/_tally.c ioprofiler/_slots.h
	$(PYTHON) -m venv .venv-coexist
	$(COEXIST_PY) -m pip install --quiet --upgrade pip
	$(COEXIST_PY) -m pip install --quiet -e '.[test,coexist]'
	touch .venv-coexist/.installed-coexist

coexist: .venv-coexist/.installed-coexist memcached
	IOPROFILER_REQUIRE_COEXIST=1 $(COEXIST_PY) -m pytest tests/test_coexist_opentelemetry.py tests/test_coexist_ddtrace.py \
		tests/test_coexist_export.py

# The own test suites of SQLAlchemy, pymemcache and redis-py (subsets, from the sdists of the
# installed versions; memcached and redis-server private, on loopback), bare and with
# ioprofiler recording around every test; fails when any test ends differently.
# PEER_ARGS="--library redis" runs one.
peer: $(INSTALLED) memcached
	$(PY) tests/peer/run.py $(PEER_ARGS)

clean:
	rm -rf $(VENV) .venv-bench .venv-sqlalchemy20 .venv-coexist .venv-py3.* .node build dist *.egg-info ioprofiler/*.so
