"""Debezium change events in all three forms, through a real broker and worker, decode to the same records."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from streamsvc.config import Settings
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import AvroSerde, DebeziumKeySerde, DebeziumSerde, JsonSerde, SerdeContext
from streamsvc.topology import Topology
from tests.serde.test_debezium import ENVELOPE_SCHEMA, EVENTS, EXPECTED, encodings
from tests.support import produce

FORMS = ("json-wrapped", "json-bare", "avro")
KEY_SCHEMA = {"type": "struct", "fields": [{"type": "int32", "optional": False, "field": "id"}]}


def test_three_forms_through_kafka(bootstrap: str, names, schema_registry, subjects) -> None:  # type: ignore[no-untyped-def]
    registry = schema_registry
    topics: dict[str, str] = {}
    topology = Topology("cdc-forms")
    for form in FORMS:
        logical = form.replace("-", "_")
        topics[logical] = names.topic(logical)
        topics[f"{logical}_rows"] = names(f"{logical}_rows")
        names.track(topics[f"{logical}_rows"], topics[logical] + ".dlq")
        subjects.track(f"{topics[logical]}-value")
        inner = AvroSerde(ENVELOPE_SCHEMA, registry=registry) if form == "avro" else None
        (
            topology.source(logical, value_serde=DebeziumSerde(inner), key_serde=DebeziumKeySerde()).to(
                f"{logical}_rows", value_serde=_RowSerde(), key_serde=JsonSerde()
            )
        )
        wrapped_key = form == "json-wrapped"
        records = []
        for event in EVENTS:
            key = {"id": 1}
            key_bytes = orjson.dumps({"schema": KEY_SCHEMA, "payload": key} if wrapped_key else key)
            records.append(
                (key_bytes, encodings(EVENTS[event], registry, SerdeContext(topics[logical]))[form])
            )
        produce(bootstrap, topics[logical], records)

    settings = Settings(app_id=names("app"), bootstrap_servers=bootstrap, instance_id="cdc-0", topics=topics)
    worker = Worker([topology], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0

    expected = [orjson.loads(orjson.dumps(dataclasses.asdict(EXPECTED[e]))) for e in EVENTS]
    for form in FORMS:
        logical = form.replace("-", "_")
        out = read_all(bootstrap, topics[f"{logical}_rows"])
        rows = [orjson.loads(m.value()) for m in out]
        keys = [orjson.loads(m.key()) for m in out]
        assert rows == expected, form
        assert keys == [{"id": 1}] * len(EVENTS)
        assert read_all(bootstrap, topics[logical] + ".dlq") == []


class _RowSerde(JsonSerde):
    """Writes a ChangeRecord as a JSON object (the tombstone too, so that it can be compared)."""

    def serialize(self, obj: Any, ctx: Any) -> bytes | None:
        return orjson.dumps(dataclasses.asdict(obj))
