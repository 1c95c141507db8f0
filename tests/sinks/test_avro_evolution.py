"""Schema evolution from Avro on the real registry: a producer using confluent-kafka's own
`AvroSerializer` adds an optional field; the running sink evolves the table, older rows read it as null."""

from __future__ import annotations

import json

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamsvc.config import Settings
from streamsvc.serde.avro import AvroSerde
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkThread, offset_counts, read_rows
from tests.support import produce, wait_for

V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}]}


def confluent_serializer(registry: SchemaRegistryClient, schema: dict[str, object]) -> AvroSerializer:
    """confluent-kafka's serializer, registering under TopicNameStrategy (`<topic>-value`)."""
    return AvroSerializer(registry, json.dumps(schema), conf={"auto.register.schemas": True})


def test_new_optional_avro_field_evolves_the_running_sink(  # type: ignore[no-untyped-def]
    bootstrap: str, names, catalog_setup, registry_url: str, schema_registry, subjects
) -> None:
    topic = names.topic("orders", 2)
    names.track(f"{topic}.dlq")
    subjects.track(f"{topic}-value")
    config, catalog = catalog_setup
    value = SerializationContext(topic, MessageField.VALUE)
    v1, v2 = confluent_serializer(schema_registry, V1), confluent_serializer(schema_registry, V2)
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=names("app"), instance_id="a", topics={"orders": topic}
    )
    spec = IcebergSinkSpec(
        name="orders",
        source="orders",
        table="sink.orders",
        value_serde=AvroSerde(None, registry_url=registry_url),  # each record's own writer schema
        commit_interval_s=0.2,
    )
    produce(bootstrap, topic, [(b"k", v1({"id": i, "amount": i / 2}, value)) for i in range(300)])
    sink = SinkThread(spec, settings, config)
    try:
        wait_for(lambda: sink.agent.committed_rows >= 300, 60, "the v1 rows")
        assert "coupon" not in catalog.load_table("sink.orders").schema().column_names
        schema_registry.set_compatibility(f"{topic}-value", "BACKWARD")  # whatever the global mode
        records = [(b"k", v2({"id": i, "amount": 1.0, "coupon": f"c{i}"}, value)) for i in range(300, 500)]
        produce(bootstrap, topic, records)
        wait_for(lambda: sink.agent.committed_rows >= 500, 60, "the v2 rows")
    finally:
        sink.close()
    assert sink.error is None
    assert schema_registry.get_versions(f"{topic}-value") == [1, 2], "v2 is a second version of the subject"
    table = catalog.load_table("sink.orders")
    assert table.schema().find_field("coupon").optional
    rows = read_rows(catalog, "sink.orders").sort_by("id")
    assert sorted(offset_counts(rows).values()) == [1] * 500
    assert rows.column("coupon").to_pylist() == [None] * 300 + [f"c{i}" for i in range(300, 500)]
    assert rows.column("amount").to_pylist()[:3] == [0.0, 0.5, 1.0]
