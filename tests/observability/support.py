"""A real observed run for the observability tests: a worker and an Iceberg sink in child processes,
each serving its control plane, fed with records whose every outcome is known in advance."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.sinks.iceberg.catalog import config_env
from tests.sinks.support import SinkProcess, events, sqlite_catalog
from tests.support import ROOT, WorkerProcess, committed_offsets, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "observed.py")
Samples = list[tuple[str, dict[str, str], float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError) as err:  # not listening (yet, or any more)
        return 0, str(err)


def scrape(base: str) -> Samples:
    status, body = get(f"{base}/metrics")
    assert status == 200, body
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(body) for s in f.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lb, v in samples if n == name and all(lb.get(k) == x for k, x in labels.items()))


def produce_transaction(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Produce `records` in one committed transaction (so each partition ends with a commit marker)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"obs-test-{time.monotonic_ns()}",
            "partitioner": "murmur2_random",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    n = 0
    for key, value in records:
        producer.produce(topic, value, key)
        n += 1
    producer.commit_transaction(60)
    return n


@dataclass
class Expected:
    consumed: int = 0
    emitted: int = 0
    filtered: int = 0
    dead: dict[str, int] = field(default_factory=lambda: {"decode": 0, "validate": 0, "process": 0})
    late: int = 0


def poison_and_good(t0: int, start: int, good: int) -> tuple[list[tuple[bytes, bytes]], Expected]:
    """Good, filtered, undecodable, invalid, exploding and windowed records (windows far ahead of t0)."""
    recs: list[tuple[bytes, bytes]] = []
    exp = Expected()

    def add(key: str, value: Any) -> None:
        recs.append((key.encode(), value if isinstance(value, bytes) else orjson.dumps(value)))

    for i in range(start, start + good):
        add(str(i), {"id": i, "t": t0 + i})
    for i in range(7):
        add(f"f{i}", {"id": i, "t": t0, "drop": True})
    for i in range(5):
        add(f"d{i}", b"{not json " + str(i).encode())
    for i in range(4):
        add(f"v{i}", {"t": t0})
    for i in range(3):
        add(f"b{i}", {"id": i, "t": t0, "boom": True})
    for i in range(20):
        add("wkey", {"id": i, "t": t0 + 10_000 + i * 100, "w": True})
    exp.consumed, exp.emitted, exp.filtered = len(recs), good + 20, 7
    exp.dead = {"decode": 5, "validate": 4, "process": 3}
    return recs, exp


def late_records(t0: int, n: int) -> list[tuple[bytes, bytes]]:
    """Windowed records whose window closed long ago (same key as the windowed ones: same partition)."""
    return [(b"wkey", orjson.dumps({"id": 1000 + i, "t": t0, "w": True})) for i in range(n)]


class ObservedRun:
    """Topics, a worker (`observed` topology) and an Iceberg sink, each with its control plane."""

    SINK_MAX_ROWS = 50

    def __init__(self, bootstrap: str, names: Any, tmp: Path, guarantee: str = "exactly_once") -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.input = names.topic("input", 2)
        self.events = names.topic("events", 1)
        names.track(names("output"), names("counts"), self.input + ".dlq", self.events + ".dlq")
        self.app = names("app")
        self.sink_app = names("sinkapp")
        self.stall_file = tmp / "stall"
        self.worker_port, self.sink_port = free_port(), free_port()
        self.worker_log, self.sink_log = tmp / "worker.log", tmp / "sink.log"
        self.catalog_config, self.catalog = sqlite_catalog(tmp)
        self.table = "obs.events"
        common = {"STREAMSVC_METRICS_HOST": "127.0.0.1"}
        self.worker = WorkerProcess(
            TOPOLOGY,
            {
                **common,
                # A second, unreachable broker makes librdkafka log (its lines must come out as JSON).
                "STREAMSVC_BOOTSTRAP_SERVERS": f"{bootstrap},127.0.0.1:1",
                "STREAMSVC_APP_ID": self.app,
                "STREAMSVC_INSTANCE_ID": "obs-0",
                "STREAMSVC_GUARANTEE": guarantee,
                "STREAMSVC_METRICS_PORT": str(self.worker_port),
                "STREAMSVC_TOPIC_INPUT": self.input,
                "STREAMSVC_TOPIC_OUTPUT": names("output"),
                "STREAMSVC_TOPIC_COUNTS": names("counts"),
                "OBSERVED_STALL_FILE": str(self.stall_file),
                "STREAMSVC_IDLE_TIMEOUT_MS": "2000",  # windowless partitions stop holding back
            },
            log=self.worker_log,
        )
        self.sink = SinkProcess(
            {
                **common,
                **config_env(self.catalog_config),
                "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
                "STREAMSVC_APP_ID": self.sink_app,
                "STREAMSVC_INSTANCE_ID": "obs-sink-0",
                "STREAMSVC_METRICS_PORT": str(self.sink_port),
                "STREAMSVC_TOPIC_EVENTS": self.events,
                "TEST_SINK_TABLE": self.table,
                "TEST_SINK_INTERVAL_S": "3600",  # commits only on max_rows: the lag between them is exact
                "TEST_SINK_MAX_ROWS": str(self.SINK_MAX_ROWS),
            },
            log=self.sink_log,
        )

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    def wait_ready(self) -> None:
        wait_for(lambda: get(f"{self.worker_url}/readyz")[0] == 200, 120, "worker readiness")
        wait_for(lambda: get(f"{self.sink_url}/readyz")[0] == 200, 120, "sink readiness")

    def wait_consumed(self, n: int) -> Samples:
        def done() -> Samples | None:
            s = scrape(self.worker_url)
            return s if total(s, "streamsvc_records_consumed_total", app=self.app) >= n else None

        return wait_for(done, 120, f"worker consumed={n}")

    def feed_sink(self) -> None:
        """55 records (5 undecodable) -> one commit at 50 rows; then 20 buffered, uncommitted."""
        from tests.support import produce

        produce(self.bootstrap, self.events, events(0, 55, bad_every=11))

        def committed() -> bool:
            s = scrape(self.sink_url)
            return total(s, "streamsvc_iceberg_commits_total", outcome="committed") >= 1

        wait_for(committed, 120, "first Iceberg commit")
        produce(self.bootstrap, self.events, events(55, 75))

    def admin_lag(self, topic: str, group: str, partitions: int) -> dict[int, int]:
        """Lag as `kafka-consumer-groups.sh` computes it: LSO minus the group's committed offset."""
        ends = end_offsets(admin_client(self.bootstrap), topic, read_committed=True)
        committed = committed_offsets(self.bootstrap, group, topic, partitions)
        return {p: ends[p] - max(committed[p], 0) for p in range(partitions)}

    def close(self) -> None:
        self.stall_file.unlink(missing_ok=True)
        for proc in (self.worker, self.sink):
            proc.terminate()
        for proc in (self.worker, self.sink):
            try:
                proc.wait(60)
            finally:
                proc.close()
