# Two commands for a newcomer:  `make demo`  and  `make test`.  Both set everything up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-all lint kafka-start kafka-stop registry-start registry-stop bench

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

registry-start: $(STAMP)
	$(BIN)/streamsvc dev registry start

registry-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev registry stop; fi

demo: kafka-start
	$(BIN)/streamsvc --log-level warning demo

lint: $(STAMP)
	$(BIN)/ruff check streamsvc tests topologies bench
	$(BIN)/mypy

# The default suite; the slow ones (fault matrices, deployment tools) run in `test-all`, which CI runs.
SLOW_MARKERS := chaos or ops

test: lint kafka-start registry-start
	$(BIN)/python -m pytest -q --durations=10 -m "not ($(SLOW_MARKERS))"

test-all: lint kafka-start registry-start
	$(BIN)/python -m pytest -q --durations=25

bench: kafka-start
	$(BIN)/python bench/passthrough.py
