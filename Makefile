# Two commands for a newcomer:  `make demo`  and  `make test`.  Both set everything up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-cluster lint kafka-start kafka-stop cluster-stop bench

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

demo: kafka-start
	$(BIN)/streamsvc --log-level warning demo

lint: $(STAMP)
	$(BIN)/ruff check streamsvc tests topologies bench
	$(BIN)/mypy

test: lint kafka-start
	$(BIN)/python -m pytest -q --durations=10 -m "not cluster"

# Failover, rolling-restart and scale-out tests on a local 3-broker cluster (the fixture starts and
# stops it, on STREAMSVC_KAFKA_CLUSTER_PORT, default 29092-29097).
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -m cluster tests/cluster

cluster-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev kafka stop --brokers 3; fi

bench: kafka-start
	$(BIN)/python bench/passthrough.py
