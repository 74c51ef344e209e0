# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLE ?= data/sample
WAREHOUSE ?= warehouse
HOST ?= 127.0.0.1
PORT ?= 8050

.PHONY: demo test install install-dev sample docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamps re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## demo: set up, load the bundled sample into ./warehouse, train the churn model, serve the app on
## http://$(HOST):$(PORT) in development mode (no login; a banner on every page says so; see docs/roles.md)
demo: install
	$(BIN)/opencem refresh --source $(SAMPLE) --warehouse $(WAREHOUSE)
	$(BIN)/opencem train --warehouse $(WAREHOUSE)
	$(BIN)/opencem status --warehouse $(WAREHOUSE)
	OPENCEM_DEV_MODE=1 $(BIN)/opencem serve --warehouse $(WAREHOUSE) --host $(HOST) --port $(PORT)

## test: set up with the dev and spark extras and run the whole suite
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## sample: regenerate data/sample (the command is recorded in data/sample/README.md)
sample: install
	$(BIN)/opencem generate --out $(SAMPLE) --customers 3000 --days 28 --seed 7

## docs: regenerate docs/contracts.md from etl/contracts.py
docs: install
	$(BIN)/python -m etl.contracts > docs/contracts.md

lint: install-dev
	$(BIN)/ruff check app etl models tests benchmarks

clean:
	rm -rf $(VENV) $(WAREHOUSE) .pytest_cache test-results
