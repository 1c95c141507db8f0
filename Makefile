# Two commands for a newcomer:  `make demo`  and  `make test`.  Both set everything up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-all test-cluster lint kafka-start kafka-stop cluster-stop registry-start \
	registry-stop lake-install lake-start lake-stop spark-install bench

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

lake-install: $(STAMP)   # build versitygw, fetch the Iceberg REST fixture jars (first run: minutes)
	$(BIN)/streamsvc dev lake install

lake-start: $(STAMP)
	$(BIN)/streamsvc dev lake start

lake-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev lake stop; fi

spark-install: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,spark]'

demo: kafka-start registry-start
	$(BIN)/streamsvc --log-level warning demo

lint: $(STAMP)
	$(BIN)/ruff check streamsvc tests topologies bench
	$(BIN)/mypy

# The default suite. The slow suites (fault matrices, deployment tools, compaction and maintenance
# races, Spark reads) run in `test-all`, the 3-broker suite in `test-cluster`; CI runs both.
SLOW_MARKERS := chaos or ops or slow or spark or cluster

test: lint kafka-start registry-start
	$(BIN)/python -m pytest -q --durations=10 -m "not ($(SLOW_MARKERS))"

test-all: lint kafka-start registry-start lake-install spark-install
	$(BIN)/python -m pytest -q --durations=25 -m "not cluster"

# Failover, rolling-restart and scale-out tests on a local 3-broker cluster (the fixture starts and
# stops it, on STREAMSVC_KAFKA_CLUSTER_PORT, default 29092-29097).
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -m cluster tests/cluster

cluster-stop:
	@if [ -x $(BIN)/streamsvc ]; then $(BIN)/streamsvc dev kafka stop --brokers 3; fi

bench: kafka-start
	$(BIN)/python bench/passthrough.py
