# fleetsim: two commands on a fresh machine.
#   make run   - create .venv, install fleetsim, run the default experiment, print the report's path
#   make test  - the same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/fleetsim run experiments/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/bench_engine.py

lint: setup
	$(BIN)/ruff check sim tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
