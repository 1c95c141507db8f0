"""Issue #7, Iceberg sink: bad types never lose a batch or crash-loop, stale static assignments are
refused, and the sink process serves its control plane (items 2, 12, 15).

Against the real broker and a real Iceberg SQL catalog (SQLite): every good record is in the table
exactly once, every bad one in `<topic>.dlq` exactly once with its `dlq.*` headers, the table's
offsets are the topic's end offsets, and a second run changes nothing.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewPartitions

from streamsvc.config import Settings
from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.sinks.iceberg.catalog import CatalogConfig, config_env
from streamsvc.sinks.iceberg.offsets import read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkProcess, SinkThread, events, read_rows, sqlite_catalog
from tests.support import free_port, header_map, produce, read_settled, wait_for

BAD_VALUES: dict[str, Any] = {"string_price": "abc", "struct_price": {"amount": 1}}


def _spec(table: str, partition_by: str = "") -> IcebergSinkSpec:
    return IcebergSinkSpec(
        name="prices",
        source="prices",
        table=table,
        commit_interval_s=0.5,
        partition_by=(partition_by,) if partition_by else (),
    )


def _settings(bootstrap: str, app: str, topic: str, instance: str = "sink-0") -> Settings:
    return Settings(app_id=app, bootstrap_servers=bootstrap, instance_id=instance, topics={"prices": topic})


def _row(i: int) -> dict[str, Any]:
    return {"id": i, "price": i * 1.5, "region": f"r{i % 3}"}


def _produce(bootstrap: str, topic: str, rows: dict[int, dict[str, Any]], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, row in rows.items():
        producer.produce(topic, orjson.dumps(row), str(i).encode(), partition=partition)
    assert producer.flush(30) == 0


def _sink(spec: IcebergSinkSpec, settings: Settings, config: CatalogConfig, timeout: float = 90) -> None:
    thread = SinkThread(spec, settings, config, until_caught_up=True)
    try:
        thread.join(timeout)
    finally:
        thread.close()


def _table(catalog, table: str) -> dict[tuple[int, int], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """(partition, offset) -> data columns; fails on a record landed twice."""
    rows = read_rows(catalog, table).to_pylist()
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for r in rows:
        where = (r["_kafka_partition"], r["_kafka_offset"])
        assert where not in out, f"{where} is in the table twice"
        out[where] = {k: v for k, v in r.items() if not k.startswith("_")}
    return out


def _dlq(bootstrap: str, topic: str) -> dict[tuple[int, int], dict[str, str]]:
    out: dict[tuple[int, int], dict[str, str]] = {}
    for msg in read_settled(bootstrap, topic + ".dlq"):
        h = header_map(msg)
        where = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        assert where not in out, f"{where} is in the DLQ twice"
        assert h["dlq.source.topic"] == topic
        out[where] = h
    return out


def _held(catalog, table: str, group: str, topic: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    return dict(read_offsets(catalog.load_table(table), group, topic).offsets)


# ---- item 2: mixed and uncastable types go to the DLQ alone, on a new and on an existing table ------


@pytest.mark.parametrize("partition_by", ["", "identity(region)"])
def test_string_among_numeric_prices_in_the_first_batch_of_a_new_table(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path, partition_by: str
) -> None:
    topic = names.topic("prices")
    names.track(topic + ".dlq")
    app = names("app")
    config, catalog = sqlite_catalog(tmp_path)
    rows = {i: _row(i) for i in range(30)}
    bad = {0: "abc", 17: "n/a"}  # the very first value of the new table is a string
    for i, price in bad.items():
        rows[i] = {**rows[i], "price": price}
    _produce(bootstrap, topic, rows)
    spec, settings = _spec("sink.prices", partition_by), _settings(bootstrap, app, topic)

    _sink(spec, settings, config)
    table = _table(catalog, "sink.prices")
    assert table == {(0, i): _row(i) for i in rows if i not in bad}
    dead = _dlq(bootstrap, topic)
    assert sorted(dead) == [(0, i) for i in sorted(bad)]
    for h in dead.values():
        assert h["dlq.stage"] == "process" and h["dlq.error.class"] and h["dlq.error.message"]
    assert _held(catalog, "sink.prices", f"{app}.prices", topic) == end_offsets(
        admin_client(bootstrap), topic
    )

    _sink(spec, settings, config)  # nothing changes the second time
    assert _table(catalog, "sink.prices") == table
    assert sorted(_dlq(bootstrap, topic)) == sorted(dead)


@pytest.mark.parametrize("partition_by", ["", "identity(region)"])
def test_mixed_and_uncastable_values_after_a_restart_on_an_existing_table(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path, partition_by: str
) -> None:
    topic = names.topic("prices")
    names.track(topic + ".dlq")
    app = names("app")
    config, catalog = sqlite_catalog(tmp_path)
    spec, settings = _spec("sink.prices", partition_by), _settings(bootstrap, app, topic)
    _produce(bootstrap, topic, {i: _row(i) for i in range(20)})
    _sink(spec, settings, config)  # the table exists now, with a double `price`

    rows = {i: _row(i) for i in range(20, 40)}
    bad = {20: BAD_VALUES["string_price"], 31: BAD_VALUES["struct_price"]}
    for i, price in bad.items():
        rows[i] = {**rows[i], "price": price}
    _produce(bootstrap, topic, rows)
    _sink(spec, settings, config)  # a new sink process: the first batch after a restart
    table = _table(catalog, "sink.prices")
    assert table == {(0, i): _row(i) for i in range(40) if i not in bad}
    dead = _dlq(bootstrap, topic)
    assert sorted(dead) == [(0, i) for i in sorted(bad)]
    assert all(h["dlq.stage"] == "process" for h in dead.values())
    assert _held(catalog, "sink.prices", f"{app}.prices", topic) == {0: 40}

    _sink(spec, settings, config)
    assert _table(catalog, "sink.prices") == table
    assert sorted(_dlq(bootstrap, topic)) == sorted(dead)


# ---- item 12: a static member restarted within the session timeout never works from a stale
# assignment --------------------------------------------------------------------------------------


def test_sink_restarted_on_another_source_topic_fills_the_new_table_from_it_alone(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    old, new = names.topic("old", 2), names.topic("new", 2)
    names.track(old + ".dlq", new + ".dlq")
    app = names("app")
    config, catalog = sqlite_catalog(tmp_path)
    produce(bootstrap, old, events(0, 400))
    produce(bootstrap, new, events(1_000, 1_300))
    _sink(_spec("sink.old"), _settings(bootstrap, app, old, "static-0"), config)
    # At once, well within the session timeout: the same ids, another topic and table.
    _sink(_spec("sink.new"), _settings(bootstrap, app, new, "static-0"), config)
    rows = read_rows(catalog, "sink.new")
    assert Counter(rows.column("_kafka_topic").to_pylist()) == {new: 300}
    assert sorted(rows.column("id").to_pylist()) == list(range(1_000, 1_300))
    assert _held(catalog, "sink.new", f"{app}.prices", new) == end_offsets(admin_client(bootstrap), new)
    assert read_rows(catalog, "sink.old").num_rows == 400


def test_sink_restarted_after_partitions_were_added_reads_them_all(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    topic = names.topic("prices", 1)
    names.track(topic + ".dlq")
    app = names("app")
    config, catalog = sqlite_catalog(tmp_path)
    spec, settings = _spec("sink.prices"), _settings(bootstrap, app, topic, "static-0")
    _produce(bootstrap, topic, {i: _row(i) for i in range(200)})
    _sink(spec, settings, config)
    admin = admin_client(bootstrap)
    for fut in admin.create_partitions([NewPartitions(topic, 4)]).values():
        fut.result(30)
    wait_for(lambda: len(end_offsets(admin, topic)) == 4, 30, "the new partitions")
    for p in range(4):
        _produce(bootstrap, topic, {i: _row(i) for i in range(200 + p * 200, 400 + p * 200)}, partition=p)
    _sink(spec, settings, config)
    ids = read_rows(catalog, "sink.prices").column("id").to_pylist()
    assert sorted(ids) == list(range(1_000)), f"{1_000 - len(set(ids))} records unread"
    assert _held(catalog, "sink.prices", f"{app}.prices", topic) == end_offsets(admin, topic)


# ---- item 15: `streamsvc iceberg sink` serves /metrics, /healthz, /readyz and logs each commit ------


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def test_sink_process_serves_its_control_plane_and_logs_each_commit(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    topic = names.topic("events", 2)
    names.track(topic + ".dlq")
    config, _ = sqlite_catalog(tmp_path)
    port = free_port()
    env = {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": names("app"),
        "STREAMSVC_INSTANCE_ID": "cp-0",
        "STREAMSVC_TOPIC_EVENTS": topic,
        "STREAMSVC_METRICS_PORT": str(port),
        "STREAMSVC_METRICS_HOST": "127.0.0.1",
        "TEST_SINK_INTERVAL_S": "0.3",
    }
    produce(bootstrap, topic, events(0, 500))
    log = tmp_path / "sink.log"
    sink = SinkProcess(env, log=log)
    try:
        wait_for(
            lambda: "streamsvc_iceberg_commits_total{" in _get(port, "/metrics")[1], 90, "commit metrics"
        )
        assert _get(port, "/healthz")[0] == 200
        wait_for(lambda: _get(port, "/readyz")[0] == 200, 30, "ready")
        sink.terminate()
        assert sink.wait(60) == 0
    finally:
        sink.close()
    commits = [orjson.loads(line) for line in log.read_bytes().splitlines() if b'"iceberg_committed"' in line]
    assert commits and sum(c["rows"] for c in commits) == 500
