"""`streamsvc reset-app` against the real broker and a real Iceberg catalog: a windowed topology with a
table join and an Iceberg sink runs, is reset, runs again, and the second run's outputs (read_committed)
and Iceberg rows equal the first's exactly; a dry run changes nothing; a running app is refused."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streamsvc.admin.app_reset import topic_overrides
from streamsvc.config import Settings, load_settings
from streamsvc.runtime.internal_topics import agent_group_id
from streamsvc.runtime.topics import end_offsets, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.sinks.iceberg.catalog import CatalogConfig, config_env
from streamsvc.sinks.iceberg.offsets import read_offsets
from streamsvc.sinks.iceberg.spec import load_specs
from streamsvc.state.changelog import changelog_topic
from streamsvc.topology.loader import load_topology
from tests.admin.support import committed, streamsvc_cli
from tests.sinks.support import SinkThread, offset_counts, read_rows, sqlite_catalog
from tests.support import ROOT, wait_for

APP = str(ROOT / "tests" / "admin" / "apps" / "revenue.py")
SINK = str(ROOT / "tests" / "admin" / "apps" / "revenue_sink.py")
PARTITIONS = 3
ROW_COLUMNS = ("start", "end", "value", "_kafka_partition", "_kafka_timestamp")


def _envelope(cid: int, rate: int) -> bytes:
    after = {"id": cid, "rate": rate}
    return orjson.dumps({"op": "c", "before": None, "after": after, "source": {"ts_ms": 1}, "ts_ms": 2})


def _load(bootstrap: str, customers: str, orders: str, n: int) -> None:
    """40 customers with rates (10 without a row: left join, amount 0); `n` orders over ~n*10 ms of event
    time, a few far behind (late)."""
    rng = random.Random(5)
    producer = Producer({"bootstrap.servers": bootstrap})
    for cid in range(30):
        producer.produce(customers, _envelope(cid, rng.randrange(1, 9)), str(cid).encode(), partition=cid % 2)
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    for i in range(n):
        cid = rng.randrange(40)
        t = base + i * 10 + rng.randrange(-150, 150) - (3_000 if rng.random() < 0.02 else 0)
        value = orjson.dumps({"id": i, "qty": rng.randrange(1, 5), "t": t})
        producer.produce(orders, value, str(cid).encode(), partition=cid % PARTITIONS)
    assert producer.flush(60) == 0


@pytest.fixture
def app_env(bootstrap: str, names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The application's settings as environment variables (as an operator would run both)."""
    config, _ = sqlite_catalog(tmp_path)
    app = names("app")
    env = {
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_INSTANCE_ID": "r-0",
        # Static members stay in the group for session.timeout.ms after they stop; dynamic ones leave.
        "STREAMSVC_STATIC_MEMBERSHIP": "false",
        "STREAMSVC_STATE_DIR": str(tmp_path / "state"),
        "STREAMSVC_TOPIC_CUSTOMERS": names.topic("customers", 2),
        "STREAMSVC_TOPIC_ORDERS": names.topic("orders", PARTITIONS),
        "STREAMSVC_TOPIC_REVENUE": names("revenue"),
        "TEST_SINK_TABLE": "admin.revenue",
        **config_env(config),
    }
    names.track(
        names("revenue"),
        names("revenue") + ".dlq",
        env["STREAMSVC_TOPIC_ORDERS"] + ".dlq",
        changelog_topic(app, "revenue", "revenue"),
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _run_app(settings: Settings) -> None:
    worker = Worker([load_topology(APP)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(180) == 0
    assert worker.agents[0].totals.balanced()


def _run_sink(settings: Settings, config: CatalogConfig) -> None:
    (spec,) = load_specs(SINK)
    sink = SinkThread(spec, settings, config, until_caught_up=True)
    sink.join(180)


def _catalog_config(env: dict[str, str]) -> CatalogConfig:
    return CatalogConfig(uri=env["STREAMSVC_ICEBERG_URI"], warehouse=env["STREAMSVC_ICEBERG_WAREHOUSE"])


def _outputs(bootstrap: str, topic: str, after: dict[int, int] | None = None) -> dict[int, Counter[Any]]:
    """Per partition, the multiset of (key, value, timestamp) at or after `after`. (Final results of
    different windows closed by one batch come in batch order, which depends on fetch sizes.)"""
    out: dict[int, Counter[Any]] = {}
    for m in read_all(bootstrap, topic):
        p, o = m.partition() or 0, m.offset() or 0
        if after is None or o >= after.get(p, 0):
            out.setdefault(p, Counter())[(m.key(), m.value(), m.timestamp()[1])] += 1
    return out


def _rows(catalog: Any, table: str) -> Counter[tuple[Any, ...]]:
    rows = read_rows(catalog, table)
    return Counter(zip(*(rows.column(c).to_pylist() for c in ROW_COLUMNS), strict=True))


@pytest.mark.parametrize("internal", ["delete", "truncate"])
def test_reset_app_replay_reproduces_topic_outputs_and_iceberg_rows(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, app_env: dict[str, str], capsys, internal: str
) -> None:
    settings = load_settings()
    config = _catalog_config(app_env)
    _, catalog = sqlite_catalog(Path(app_env["STREAMSVC_STATE_DIR"]).parent)
    revenue, orders = app_env["STREAMSVC_TOPIC_REVENUE"], app_env["STREAMSVC_TOPIC_ORDERS"]
    _load(bootstrap, app_env["STREAMSVC_TOPIC_CUSTOMERS"], orders, 3_000)

    _run_app(settings)
    _run_sink(settings, config)
    first = _outputs(bootstrap, revenue)
    first_rows = _rows(catalog, "admin.revenue")
    assert sum(sum(c.values()) for c in first.values()) > 100 and sum(first_rows.values()) > 100
    assert sum(first_rows.values()) == sum(sum(c.values()) for c in first.values())
    windows = Counter((k, orjson.loads(v)["start"]) for c in first.values() for (k, v, _) in c.elements())
    assert max(windows.values()) == 1  # one final result per (key, window)
    changelog = changelog_topic(settings.app_id, "revenue", "revenue")
    group = agent_group_id(load_topology(APP), settings)
    sink_group = f"{settings.effective_group_id}.revenue"
    before = (committed(admin, group), read_offsets(catalog.load_table("admin.revenue"), sink_group, revenue))

    # A dry run prints the plan and changes nothing.
    code, out, err = streamsvc_cli(capsys, "reset-app", APP, "--sink", SINK)
    assert code == 0, err
    assert "No action will be performed" in err
    assert changelog in out and "roll back to the empty table" in out
    assert committed(admin, group) == before[0]
    assert read_offsets(catalog.load_table("admin.revenue"), sink_group, revenue) == before[1]
    assert changelog in admin.list_topics(timeout=10).topics

    end_of_first = end_offsets(admin, revenue)
    code, out, err = streamsvc_cli(
        capsys, "reset-app", APP, "--sink", SINK, "--internal-topics", internal, "--execute"
    )
    assert code == 0, err
    assert committed(admin, group) == {(orders, p): 0 for p in range(PARTITIONS)}
    if internal == "delete":
        assert changelog not in admin.list_topics(timeout=10).topics
    else:  # emptied in place, settings kept
        assert set(end_offsets(admin, changelog).values()) == {0}
        assert topic_overrides(admin, changelog)["cleanup.policy"] == "compact"
    assert read_rows(catalog, "admin.revenue").num_rows == 0
    assert read_offsets(catalog.load_table("admin.revenue"), sink_group, revenue).offsets == end_of_first

    _run_app(settings)
    _run_sink(settings, config)
    assert _outputs(bootstrap, revenue, after=end_of_first) == first
    assert _rows(catalog, "admin.revenue") == first_rows


def test_reset_app_refuses_a_running_application(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, app_env: dict[str, str], capsys
) -> None:
    settings = load_settings()
    group = agent_group_id(load_topology(APP), settings)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    assigned = threading.Event()
    consumer.subscribe([app_env["STREAMSVC_TOPIC_ORDERS"]], on_assign=lambda c, ps: assigned.set())
    try:
        wait_for(lambda: consumer.poll(0.2) is None and assigned.is_set(), 60, "the member to join")
        code, _, err = streamsvc_cli(capsys, "reset-app", APP, "--execute")
        assert code == 3
        assert (
            f"Error: Assignments can only be reset if the group '{group}' is inactive, "
            "but the current state is Stable." in err
        )
    finally:
        consumer.close()


ORDERS_SINK = str(ROOT / "tests" / "admin" / "apps" / "orders_sink.py")


@pytest.mark.parametrize("mode", ["rollback", "rewrite"])
def test_sink_of_an_input_topic_resumes_without_gap_or_duplicate(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, app_env: dict[str, str], capsys, mode: str
) -> None:
    settings = load_settings().with_overrides(batch_size=50)  # a commit every ~100 rows: many snapshots
    config = _catalog_config(app_env)
    _, catalog = sqlite_catalog(Path(app_env["STREAMSVC_STATE_DIR"]).parent)
    orders = app_env["STREAMSVC_TOPIC_ORDERS"]
    _load(bootstrap, app_env["STREAMSVC_TOPIC_CUSTOMERS"], orders, 1_500)
    ends = end_offsets(admin, orders)
    (spec,) = load_specs(ORDERS_SINK)
    SinkThread(spec, settings, config, until_caught_up=True).join(180)
    table = catalog.load_table("admin.orders")
    assert len(table.snapshots()) > 5
    sink_group = f"{settings.effective_group_id}.orders"

    code, out, err = streamsvc_cli(
        capsys,
        "reset-app",
        APP,
        "--sink",
        ORDERS_SINK,
        "--to-offset",
        "230",
        "--iceberg-reset",
        mode,
        "--execute",
    )
    assert code == 0, err
    held = read_offsets(catalog.load_table("admin.orders"), sink_group, orders).offsets
    rows = offset_counts(read_rows(catalog, "admin.orders"))
    # The table holds exactly the records before its offsets, once each; never any at or after them.
    assert sorted(rows) == sorted((orders, p, o) for p, end in held.items() for o in range(end))
    assert max(rows.values()) == 1
    if mode == "rewrite":
        assert held == {p: min(230, e) for p, e in ends.items()}
    else:
        assert all(o <= min(230, ends[p]) for p, o in held.items()), held
        assert "roll back to snapshot" in out
    # The sink's Kafka group (lag monitoring) follows the table.
    assert committed(admin, sink_group) == {(orders, p): held.get(p, 0) for p in range(PARTITIONS)}

    SinkThread(spec, settings, config, until_caught_up=True).join(180)
    rows = offset_counts(read_rows(catalog, "admin.orders"))
    assert sorted(rows) == sorted((orders, p, o) for p, end in ends.items() for o in range(end))
    assert max(rows.values()) == 1
