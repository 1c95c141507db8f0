"""Avro end to end on the real registry: a producer using confluent-kafka's own `AvroSerializer` writes
v1, then v2 (a field added with a default); a worker reading with v2 decodes both; the registry refuses
an incompatible v3 with 409, which AvroSerde reports as a record-level EncodeError."""

from __future__ import annotations

import json

import orjson
import pytest
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamsvc.config import Settings
from streamsvc.errors import EncodeError
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import AvroSerde, JsonSerde, SerdeContext
from streamsvc.topology import Topology
from tests.support import produce

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}]}
V3_INCOMPATIBLE = {**V1, "fields": [*V1["fields"], {"name": "region", "type": "string"}]}


def test_worker_decodes_v1_and_v2_written_by_confluents_serializer(  # type: ignore[no-untyped-def]
    bootstrap: str, names, registry_url: str, schema_registry, subjects
) -> None:
    topic = names.topic("orders")
    out = names.topic("out")  # created up front, so reading it never races its auto-creation
    names.track(f"{topic}.dlq")
    subject = f"{topic}-value"
    subjects.track(subject)
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1 = AvroSerializer(schema_registry, json.dumps(V1))
    v2 = AvroSerializer(schema_registry, json.dumps(V2))
    produce(bootstrap, topic, [(b"a", v1({"id": i, "amount": float(i)}, ctx)) for i in range(3)])
    schema_registry.set_compatibility(subject, "BACKWARD")  # whatever the registry's global mode
    produce(
        bootstrap, topic, [(b"b", v2({"id": i, "amount": 1.5, "currency": "USD"}, ctx)) for i in range(3, 5)]
    )
    ids = [schema_registry.get_version(subject, v).schema_id for v in (1, 2)]
    assert ids[0] != ids[1]

    topology = Topology("avro-e2e")
    topology.source("orders", value_serde=AvroSerde(json.dumps(V2))).to("out", value_serde=JsonSerde())
    settings = Settings(
        app_id=names("app"),
        bootstrap_servers=bootstrap,
        instance_id="e2e-0",
        topics={"orders": topic, "out": out},
        registry_url=registry_url,  # the worker binds the serde to the real registry
    )
    worker = Worker([topology], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0

    decoded = [orjson.loads(m.value()) for m in read_all(bootstrap, out)]
    assert decoded == [{"id": i, "amount": float(i), "currency": "EUR"} for i in range(3)] + [
        {"id": i, "amount": 1.5, "currency": "USD"} for i in range(3, 5)
    ]
    assert read_all(bootstrap, f"{topic}.dlq") == []

    # An incompatible v3 is refused by the registry (409) and never reaches the topic.
    with pytest.raises(EncodeError, match="cannot register the schema"):
        AvroSerde(json.dumps(V3_INCOMPATIBLE), registry=schema_registry).serialize(
            {"id": 9, "amount": 1.0, "region": "eu"}, SerdeContext(topic)
        )
    assert schema_registry.get_versions(subject) == [1, 2]
