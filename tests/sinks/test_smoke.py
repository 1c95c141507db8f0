"""Basic Kafka -> Iceberg landing: rows, metadata columns, DLQ, offsets in the table."""

from __future__ import annotations

from pathlib import Path

from streamsvc.config import Settings
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import read_all
from streamsvc.sinks.iceberg.offsets import offsets_key, read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkThread, events, offset_counts, read_rows, sqlite_catalog
from tests.support import produce


def test_lands_every_record_once_with_offsets_and_dlq(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", 3)
    names.track(f"{topic}.dlq")
    produce(bootstrap, topic, events(0, 3000, bad_every=500))
    config, catalog = sqlite_catalog(tmp_path)
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=names("app"), instance_id="i0", topics={"events": topic}
    )
    spec = IcebergSinkSpec(name="events", source="events", table="sink.events", commit_interval_s=0.5)
    SinkThread(spec, settings, config, until_caught_up=True).join(90)

    rows = read_rows(catalog, "sink.events")
    counts = offset_counts(rows)
    assert len(counts) == 3000 - 6 and max(counts.values()) == 1
    assert set(rows.column("id").to_pylist()) == {i for i in range(3000) if i % 500}
    table = catalog.load_table("sink.events")
    held = read_offsets(table, f"{names('app')}.events", topic)
    assert sum(held.offsets.values()) == 3000
    assert table.properties[offsets_key(f"{names('app')}.events", topic)]
    assert table.properties["commit.retry.num-retries"] == "0"
    dlq = read_all(bootstrap, f"{topic}.dlq")
    assert sorted(int(dlq_headers(m.headers())["dlq.source.offset"]) >= 0 for m in dlq) == [True] * 6
    assert {m.value() for m in dlq} == {b"{not json " + str(i).encode() for i in range(0, 3000, 500)}
