# Two commands for a newcomer:  `make demo`  and  `make test`.  Both set everything up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-slow lint kafka-start kafka-stop lake-install lake-start lake-stop spark-install bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

kafka-start: $(STAMP)
	$(BIN)/streamsvc dev kafka start

kafka-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev kafka stop; fi

lake-install: $(STAMP)   # build versitygw, fetch the Iceberg REST fixture jars (first run: minutes)
	$(BIN)/streamsvc dev lake install

lake-start: $(STAMP)
	$(BIN)/streamsvc dev lake start

lake-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev lake stop; fi

spark-install: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,spark]'

demo: kafka-start
	$(BIN)/streamsvc --log-level warning demo

lint: $(STAMP)
	$(BIN)/ruff check streamsvc tests topologies bench
	$(BIN)/mypy

test: lint kafka-start
	$(BIN)/python -m pytest -q --durations=10 -m "not slow and not spark"

test-slow: kafka-start spark-install
	$(BIN)/python -m pytest -q --durations=10 -m "slow or spark"

bench: kafka-start
	$(BIN)/python bench/passthrough.py
