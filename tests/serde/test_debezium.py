"""Debezium change events: the same logical event in all three encodings decodes to equal ChangeRecords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from streamsvc.errors import MalformedPayloadError, UnknownSchemaError
from streamsvc.registry import registry_client
from streamsvc.serde import AvroSerde, ChangeRecord, DebeziumKeySerde, DebeziumSerde, SerdeContext

ENVELOPE_SCHEMA = (
    Path(__file__).resolve().parents[2] / "schemas" / "demo" / "customers_envelope.avsc"
).read_text()
CTX = SerdeContext("dbserver1.inventory.customers")
KEY_CTX = SerdeContext("dbserver1.inventory.customers", is_key=True)

ALICE = {"id": 1, "name": "Alice", "email": "alice@example.com"}
ALICE_2 = {"id": 1, "name": "Alice", "email": None}


def source(ts_ms: int, lsn: int | None) -> dict[str, Any]:
    return {"ts_ms": ts_ms, "lsn": lsn, "db": "inventory", "table": "customers"}


EVENTS: dict[str, dict[str, Any] | None] = {
    "read": {"before": None, "after": ALICE, "source": source(1000, None), "op": "r", "ts_ms": 1001},
    "create": {"before": None, "after": ALICE, "source": source(2000, 24023128), "op": "c", "ts_ms": 2001},
    "update": {"before": ALICE, "after": ALICE_2, "source": source(3000, 24023300), "op": "u", "ts_ms": 3001},
    "delete": {"before": ALICE_2, "after": None, "source": source(4000, 24023400), "op": "d", "ts_ms": 4001},
    "tombstone": None,
}

EXPECTED = {
    "read": ChangeRecord("r", None, ALICE, source(1000, None), 1001, 1000, {}),
    "create": ChangeRecord("c", None, ALICE, source(2000, 24023128), 2001, 2000, {"lsn": 24023128}),
    "update": ChangeRecord("u", ALICE, ALICE_2, source(3000, 24023300), 3001, 3000, {"lsn": 24023300}),
    "delete": ChangeRecord("d", ALICE_2, None, source(4000, 24023400), 4001, 4000, {"lsn": 24023400}),
    "tombstone": ChangeRecord("tombstone", None, None, {}, None, None, {}),
}

# Kafka Connect's JsonConverter schema for the envelope (schemas.enable=true); content is not interpreted.
_VALUE_SCHEMA = {
    "type": "struct",
    "optional": True,
    "name": "dbserver1.inventory.customers.Value",
    "fields": [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "string", "optional": True, "field": "email"},
    ],
}
CONNECT_SCHEMA = {
    "type": "struct",
    "optional": False,
    "name": "dbserver1.inventory.customers.Envelope",
    "fields": [
        {**_VALUE_SCHEMA, "field": "before"},
        {**_VALUE_SCHEMA, "field": "after"},
        {
            "type": "struct",
            "optional": False,
            "name": "io.debezium.connector.postgresql.Source",
            "field": "source",
            "fields": [
                {"type": "int64", "optional": False, "field": "ts_ms"},
                {"type": "int64", "optional": True, "field": "lsn"},
                {"type": "string", "optional": False, "field": "db"},
                {"type": "string", "optional": False, "field": "table"},
            ],
        },
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
    ],
}


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return registry_client("mock://debezium")


def encodings(
    envelope: dict[str, Any] | None, registry: SchemaRegistryClient, ctx: SerdeContext = CTX
) -> dict[str, bytes | None]:
    """The same logical event as JSON with the wrapper, bare JSON, and registry Avro (for `ctx`'s topic)."""
    if envelope is None:
        return {"json-wrapped": None, "json-bare": None, "avro": None}
    return {
        "json-wrapped": orjson.dumps({"schema": CONNECT_SCHEMA, "payload": envelope}),
        "json-bare": orjson.dumps(envelope),
        "avro": AvroSerde(ENVELOPE_SCHEMA, registry=registry).serialize(envelope, ctx),
    }


def serde_for(form: str, registry: SchemaRegistryClient) -> DebeziumSerde:
    return DebeziumSerde(AvroSerde(ENVELOPE_SCHEMA, registry=registry)) if form == "avro" else DebeziumSerde()


@pytest.mark.parametrize("event", list(EVENTS))
def test_three_forms_decode_to_equal_records(event: str, registry: SchemaRegistryClient) -> None:
    decoded = {
        form: serde_for(form, registry).deserialize(data, CTX)
        for form, data in encodings(EVENTS[event], registry).items()
    }
    assert decoded["json-wrapped"] == decoded["json-bare"] == decoded["avro"] == EXPECTED[event]


def test_row_and_is_delete() -> None:
    assert EXPECTED["read"].row == ALICE
    assert EXPECTED["create"].row == ALICE
    assert EXPECTED["update"].row == ALICE_2
    assert EXPECTED["delete"].row == ALICE_2
    assert EXPECTED["tombstone"].row is None
    assert [name for name, rec in EXPECTED.items() if rec.is_delete] == ["delete", "tombstone"]


def test_wrapper_with_null_payload_is_tombstone() -> None:
    data = orjson.dumps({"schema": CONNECT_SCHEMA, "payload": None})
    assert DebeziumSerde().deserialize(data, CTX) == EXPECTED["tombstone"]


def test_tombstones_are_independent_objects() -> None:
    first = DebeziumSerde().deserialize(None, CTX)
    first.source["mutated"] = True
    assert DebeziumSerde().deserialize(None, CTX).source == {}


def test_truncate_and_message_events() -> None:
    serde = DebeziumSerde()
    truncate = serde.deserialize(orjson.dumps({"op": "t", "source": source(5000, 99), "ts_ms": 5001}), CTX)
    assert truncate == ChangeRecord("t", None, None, source(5000, 99), 5001, 5000, {"lsn": 99})
    assert truncate.row is None and not truncate.is_delete
    message = serde.deserialize(orjson.dumps({"op": "m", "ts_ms": 6001, "message": {"prefix": "p"}}), CTX)
    assert message == ChangeRecord("m", ts_ms=6001)


def test_mysql_binlog_position() -> None:
    envelope = {
        "before": None,
        "after": {"id": 1},
        "source": {"ts_ms": 10, "file": "mysql-bin.000003", "pos": 154, "row": 0, "db": "inventory"},
        "op": "c",
        "ts_ms": 11,
    }
    record = DebeziumSerde().deserialize(orjson.dumps(envelope), CTX)
    assert record.position == {"file": "mysql-bin.000003", "pos": 154}
    assert record.source_ts_ms == 10


def test_bare_envelope_is_not_mistaken_for_a_wrapper() -> None:
    # A bare envelope always has `op`, so it never has exactly the keys schema+payload.
    envelope = {"op": "c", "after": {"schema": 1, "payload": 2}, "source": {}}
    assert DebeziumSerde().deserialize(orjson.dumps(envelope), CTX).after == {"schema": 1, "payload": 2}


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ({"before": None, "after": ALICE, "source": source(1, 2)}, "no `op`"),
        ({"before": None, "after": ALICE, "op": "x"}, "unknown op 'x'"),
        ({"after": ALICE, "op": ["c"]}, "unknown op"),
        ({"schema": {}, "payload": {"after": ALICE}}, "no `op`"),
        ({"op": "c", "after": [1, 2]}, "`after`"),
        ({"op": "c", "after": ALICE, "source": "pg"}, "`source`"),
        ({"op": "c", "after": ALICE, "ts_ms": "yesterday"}, "`ts_ms`"),
        ([1, 2, 3], "must be an object"),
        ("c", "must be an object"),
    ],
)
def test_malformed_envelopes(envelope: Any, message: str) -> None:
    with pytest.raises(MalformedPayloadError, match=message):
        DebeziumSerde().deserialize(orjson.dumps(envelope), CTX)


def test_invalid_json_is_malformed() -> None:
    with pytest.raises(MalformedPayloadError):
        DebeziumSerde().deserialize(b'{"op": "c", "after": {', CTX)


def test_avro_errors_propagate(registry: SchemaRegistryClient) -> None:
    with pytest.raises(UnknownSchemaError):
        serde_for("avro", registry).deserialize(b"\x00\x00\x00\x10\x00\x00", CTX)


@pytest.mark.parametrize("event", list(EVENTS))
@pytest.mark.parametrize("form", ["json-bare", "avro"])
def test_serialize_round_trip(event: str, form: str, registry: SchemaRegistryClient) -> None:
    serde = serde_for(form, registry)
    data = serde.serialize(EXPECTED[event], CTX)
    assert (data is None) == (event == "tombstone")
    assert serde.deserialize(data, CTX) == EXPECTED[event]


def test_serialize_writes_bare_envelope() -> None:
    data = DebeziumSerde().serialize(EXPECTED["update"], CTX)
    assert data is not None
    assert orjson.loads(data) == EVENTS["update"]
    assert DebeziumSerde().serialize(EVENTS["update"], CTX) == data


# -- keys ---------------------------------------------------------------------------------------------


def test_key_forms(registry: SchemaRegistryClient) -> None:
    key_schema = {
        "type": "record",
        "name": "Key",
        "namespace": "dbserver1.inventory.customers",
        "fields": [{"name": "id", "type": "int"}],
    }
    avro_key = AvroSerde(key_schema, registry=registry)
    wrapped = orjson.dumps(
        {
            "schema": {"type": "struct", "fields": [{"type": "int32", "optional": False, "field": "id"}]},
            "payload": {"id": 1},
        }
    )
    assert DebeziumKeySerde().deserialize(wrapped, KEY_CTX) == {"id": 1}
    assert DebeziumKeySerde().deserialize(b'{"id": 1}', KEY_CTX) == {"id": 1}
    avro_data = avro_key.serialize({"id": 1}, KEY_CTX)
    assert DebeziumKeySerde(avro_key).deserialize(avro_data, KEY_CTX) == {"id": 1}
    assert registry.get_subjects() == ["dbserver1.inventory.customers-key"]
    assert DebeziumKeySerde().deserialize(None, KEY_CTX) is None


def test_key_must_be_an_object() -> None:
    with pytest.raises(MalformedPayloadError, match="primary-key"):
        DebeziumKeySerde().deserialize(b"42", KEY_CTX)
    with pytest.raises(MalformedPayloadError):
        DebeziumKeySerde().deserialize(b"{", KEY_CTX)


def test_key_serialize() -> None:
    serde = DebeziumKeySerde()
    assert serde.deserialize(serde.serialize({"id": 3}, KEY_CTX), KEY_CTX) == {"id": 3}
