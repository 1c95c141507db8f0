"""Partitioned tables, schema evolution while the sink runs, and maintenance keeping the offsets."""

from __future__ import annotations

from datetime import timedelta

import orjson

from streamsvc.config import Settings
from streamsvc.sinks.iceberg.maintenance import maintain
from streamsvc.sinks.iceberg.offsets import read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkThread, events, offset_counts, read_rows
from tests.support import produce


def test_partitioned_table_evolves_with_a_new_optional_field(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", 2)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=names("app"), instance_id="p", topics={"events": topic}
    )
    spec = IcebergSinkSpec(
        name="events",
        source="events",
        table="sink.events",
        commit_interval_s=0.3,
        partition_by=("day(_kafka_timestamp)", "identity(region)"),
    )
    produce(bootstrap, topic, events(0, 500))
    SinkThread(spec, settings, config, until_caught_up=True).join(60)
    # The producer's schema gains an optional field mid-stream.
    produce(
        bootstrap,
        topic,
        [(b"k", orjson.dumps({"id": i, "n": 1, "region": "r9", "extra": f"x{i}"})) for i in range(500, 800)],
    )
    SinkThread(spec, settings, config, until_caught_up=True).join(60)

    table = catalog.load_table("sink.events")
    assert [f.name for f in table.spec().fields] == ["_kafka_timestamp_day", "region"]
    assert table.schema().find_field("extra").optional
    rows = read_rows(catalog, "sink.events").sort_by("id")
    assert sorted(offset_counts(rows).values()) == [1] * 800
    extra = rows.column("extra").to_pylist()
    assert extra[:500] == [None] * 500 and extra[500:] == [f"x{i}" for i in range(500, 800)]
    files = table.inspect.files().column("partition").to_pylist()
    assert {f["region"] for f in files} == {"r0", "r1", "r2", "r9"}


def test_maintenance_expires_snapshots_and_keeps_offsets(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", 1)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=app, instance_id="m", topics={"events": topic}, batch_size=50
    )
    spec = IcebergSinkSpec(name="events", source="events", table="sink.events", max_rows=50)
    produce(bootstrap, topic, events(0, 1000))
    SinkThread(spec, settings, config, until_caught_up=True).join(60)
    table = catalog.load_table("sink.events")
    before = read_offsets(table, f"{app}.events", topic)
    assert len(table.snapshots()) >= 20
    with table.io.new_output(f"{table.location()}/data/stray.parquet").create() as out:
        out.write(b"x")

    report = maintain(table, older_than=timedelta(0), retain_last=3, orphans_older_than=timedelta(0))
    table = catalog.load_table("sink.events")
    assert len(report.snapshots_expired) >= 15
    assert report.manifests_after == 1 < report.manifests_before
    assert any(p.endswith("stray.parquet") for p in report.orphans_deleted)
    assert read_offsets(table, f"{app}.events", topic).offsets == before.offsets == {0: 1000}
    assert sorted(offset_counts(read_rows(catalog, "sink.events")).values()) == [1] * 1000
    # The sink resumes from the maintained table without re-reading anything.
    produce(bootstrap, topic, events(1000, 1100))
    SinkThread(spec, settings, config, until_caught_up=True).join(60)
    assert sorted(offset_counts(read_rows(catalog, "sink.events")).values()) == [1] * 1100


def test_in_agent_maintenance_bounds_snapshots(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", 1)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=app, instance_id="m", topics={"events": topic}, batch_size=25
    )
    spec = IcebergSinkSpec(
        name="events",
        source="events",
        table="sink.events",
        max_rows=25,
        maintain_every_commits=10,
        maintain_retain_last=5,
    )
    produce(bootstrap, topic, events(0, 1000))
    sink = SinkThread(spec, settings, config, until_caught_up=True)
    sink.join(60)
    assert sink.agent.commits >= 40 and len(sink.agent.maintain_seconds) >= 4
    table = catalog.load_table("sink.events")
    assert len(table.snapshots()) <= 5 + 2 * 10  # retained + at most one interval of new snapshots
    assert read_offsets(table, f"{app}.events", topic).offsets == {0: 1000}
    assert sorted(offset_counts(read_rows(catalog, "sink.events")).values()) == [1] * 1000
