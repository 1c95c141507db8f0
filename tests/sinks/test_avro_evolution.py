"""Schema evolution from Avro: a new optional field in the producer's schema evolves the table while the
sink runs; older rows read it as null."""

from __future__ import annotations

import time

from streamsvc.config import Settings
from streamsvc.registry.client import registry_client
from streamsvc.serde.avro import AvroSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkThread, offset_counts, read_rows
from tests.support import produce, wait_for

V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}]}


def test_new_optional_avro_field_evolves_the_running_sink(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("orders", 2)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    registry = registry_client(f"mock://{names('registry')}")
    ctx = SerdeContext(topic)
    v1, v2 = AvroSerde(V1, registry=registry), AvroSerde(V2, registry=registry)
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=names("app"), instance_id="a", topics={"orders": topic}
    )
    spec = IcebergSinkSpec(
        name="orders",
        source="orders",
        table="sink.orders",
        value_serde=AvroSerde(None, registry=registry),
        commit_interval_s=0.2,
    )
    produce(bootstrap, topic, [(b"k", v1.serialize({"id": i, "amount": i / 2}, ctx)) for i in range(300)])
    sink = SinkThread(spec, settings, config)
    try:
        wait_for(lambda: sink.agent.committed_rows >= 300, 60, "the v1 rows")
        assert "coupon" not in catalog.load_table("sink.orders").schema().column_names
        time.sleep(0.3)
        records = [
            (b"k", v2.serialize({"id": i, "amount": 1.0, "coupon": f"c{i}"}, ctx)) for i in range(300, 500)
        ]
        produce(bootstrap, topic, records)
        wait_for(lambda: sink.agent.committed_rows >= 500, 60, "the v2 rows")
    finally:
        sink.close()
    assert sink.error is None
    table = catalog.load_table("sink.orders")
    assert table.schema().find_field("coupon").optional
    rows = read_rows(catalog, "sink.orders").sort_by("id")
    assert sorted(offset_counts(rows).values()) == [1] * 500
    assert rows.column("coupon").to_pylist() == [None] * 300 + [f"c{i}" for i in range(300, 500)]
    assert rows.column("amount").to_pylist()[:3] == [0.0, 0.5, 1.0]
