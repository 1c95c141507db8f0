"""AvroSerde: Confluent framing, schema evolution, error classes, registry binding, batch decoding."""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsvc.errors import (
    ConfigError,
    DecodeError,
    EncodeError,
    MalformedPayloadError,
    SchemaResolutionError,
    UnknownSchemaError,
    WireFormatError,
)
from streamsvc.registry import (
    record_name_strategy,
    registry_client,
    topic_name_strategy,
    topic_record_name_strategy,
)
from streamsvc.serde import AvroSerde, SerdeContext

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "demo"
ORDER_V1 = (SCHEMAS / "order_v1.avsc").read_text()
ORDER_V2 = (SCHEMAS / "order_v2.avsc").read_text()
CTX = SerdeContext("orders")
ORDER = {"order_id": "o-1", "customer_id": 7, "amount": 12.5, "ts_ms": 1_700_000_000_000, "note": None}


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return registry_client("mock://test")


def with_field(schema_text: str, field: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(schema_text)
    schema["fields"].append(field)
    return schema


def frame(schema_id: int, datum: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + datum


def outcome(fn: Callable[[], Any]) -> tuple[Any, Any]:
    try:
        return ("ok", fn())
    except DecodeError as exc:
        return (type(exc), str(exc))


# -- round trip and framing ---------------------------------------------------------------------------


def test_round_trip_and_wire_format(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    assert data[0] == 0
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert schema_id == registry.get_latest_version("orders-value").schema_id
    assert serde.deserialize(data, CTX) == ORDER


order_records = st.fixed_dictionaries(
    {
        "order_id": st.text(),
        "customer_id": st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "amount": st.floats(allow_nan=False),
        "ts_ms": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "note": st.none() | st.text(),
    }
)
_HYPOTHESIS_SERDE = AvroSerde(ORDER_V1, registry=registry_client("mock://hypothesis"))


@settings(database=None, max_examples=200)
@given(order_records)
def test_round_trip_property(record: dict[str, Any]) -> None:
    assert _HYPOTHESIS_SERDE.deserialize(_HYPOTHESIS_SERDE.serialize(record, CTX), CTX) == record


def test_null_stays_null(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    assert serde.serialize(None, CTX) is None
    assert serde.deserialize(None, CTX) is None


def test_trailing_bytes_are_ignored(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    assert serde.deserialize(data + b"\x00\xff", CTX) == ORDER


def test_schema_accepts_dict(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(orjson.loads(ORDER_V1), registry=registry)
    assert serde.deserialize(serde.serialize(ORDER, CTX), CTX) == ORDER
    assert serde.record_name == "streamsvc.demo.Order"


# -- schema evolution ---------------------------------------------------------------------------------


def test_v1_record_read_with_v2_reader_gets_default(registry: SchemaRegistryClient) -> None:
    data = AvroSerde(ORDER_V1, registry=registry).serialize(ORDER, CTX)
    assert AvroSerde(ORDER_V2, registry=registry).deserialize(data, CTX) == {**ORDER, "currency": "EUR"}


def test_v2_record_read_with_v1_reader_drops_new_field(registry: SchemaRegistryClient) -> None:
    data = AvroSerde(ORDER_V2, registry=registry).serialize({**ORDER, "currency": "USD"}, CTX)
    assert AvroSerde(ORDER_V1, registry=registry).deserialize(data, CTX) == ORDER


def test_reader_field_without_default_missing_in_writer(registry: SchemaRegistryClient) -> None:
    data = AvroSerde(ORDER_V1, registry=registry).serialize(ORDER, CTX)
    reader = AvroSerde(with_field(ORDER_V1, {"name": "region", "type": "string"}), registry=registry)
    with pytest.raises(SchemaResolutionError, match="region"):
        reader.deserialize(data, CTX)


def test_incompatible_field_type(registry: SchemaRegistryClient) -> None:
    data = AvroSerde(ORDER_V1, registry=registry).serialize(ORDER, CTX)
    schema = orjson.loads(ORDER_V1)
    schema["fields"][0]["type"] = "int"  # order_id: string -> int cannot be promoted
    with pytest.raises(SchemaResolutionError):
        AvroSerde(schema, registry=registry).deserialize(data, CTX)


def test_writer_schema_fetched_and_parsed_once(
    registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = AvroSerde(ORDER_V1, registry=registry).serialize(ORDER, CTX)
    calls: list[int] = []
    original = registry.get_schema

    def counting_get_schema(schema_id: int, *args: Any, **kwargs: Any) -> Schema:
        calls.append(schema_id)
        return original(schema_id, *args, **kwargs)

    monkeypatch.setattr(registry, "get_schema", counting_get_schema)
    reader = AvroSerde(ORDER_V2, registry=registry)
    for _ in range(3):
        reader.deserialize(data, CTX)
    reader.deserialize_many([data, data], CTX)
    assert len(calls) == 1


# -- decode errors ------------------------------------------------------------------------------------


def test_truncated_datum(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    for cut in range(6, len(data) - 1):
        with pytest.raises(MalformedPayloadError):
            serde.deserialize(data[:cut], CTX)


def test_garbage_datum(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    with pytest.raises(MalformedPayloadError):  # string length 2, then invalid UTF-8
        serde.deserialize(data[:5] + b"\x04\xff\xfe" + b"\x00" * 20, CTX)


def test_header_only_record_is_malformed(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    with pytest.raises(MalformedPayloadError):
        serde.deserialize(data[:5], CTX)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_too_short_for_framing(registry: SchemaRegistryClient, data: bytes) -> None:
    with pytest.raises(WireFormatError, match="too short"):
        AvroSerde(ORDER_V1, registry=registry).deserialize(data, CTX)


def test_wrong_magic_byte(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry)
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    with pytest.raises(WireFormatError, match="0x01"):
        serde.deserialize(b"\x01" + data[1:], CTX)
    with pytest.raises(WireFormatError):
        serde.deserialize(b'{"order_id": "o-1"}', CTX)


def test_unknown_schema_id(registry: SchemaRegistryClient) -> None:
    with pytest.raises(UnknownSchemaError, match="4242"):
        AvroSerde(ORDER_V1, registry=registry).deserialize(frame(4242, b"\x02a"), CTX)


def test_non_avro_schema_id(registry: SchemaRegistryClient) -> None:
    schema_id = registry.register_schema("orders-value", Schema('{"type": "object"}', "JSON"))
    with pytest.raises(WireFormatError, match="JSON"):
        AvroSerde(ORDER_V1, registry=registry).deserialize(frame(schema_id, b"{}"), CTX)


def test_registry_outage_is_not_a_decode_error(
    registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Schema:
        raise SchemaRegistryError(503, 50300, "unavailable")

    monkeypatch.setattr(registry, "get_schema", unavailable)
    with pytest.raises(SchemaRegistryError):
        AvroSerde(ORDER_V1, registry=registry).deserialize(frame(1, b"\x02a"), CTX)


# -- batch decoding -----------------------------------------------------------------------------------


def test_deserialize_many_matches_per_record_results(registry: SchemaRegistryClient) -> None:
    v1 = AvroSerde(ORDER_V1, registry=registry)
    v2 = AvroSerde(ORDER_V2, registry=registry)
    ok1 = v1.serialize(ORDER, CTX)
    ok2 = v2.serialize({**ORDER, "order_id": "o-2", "currency": "USD"}, CTX)
    assert ok1 is not None and ok2 is not None
    batch: list[bytes | None] = [
        ok1,
        None,
        ok2,
        ok1[:-3],  # truncated
        b"\x07" + ok1[1:],  # wrong magic byte
        b"\x00\x00",  # too short
        frame(999, b"\x02a"),  # unknown schema id
        ok2,
        frame(999, b"\x02b"),
        ok1[:5] + b"\x04\xff\xfe" + b"\x00" * 20,  # invalid UTF-8
    ]
    # v1 and v2 readers exercise both the identical-schema path and writer->reader resolution.
    for reader in (AvroSerde(ORDER_V1, registry=registry), AvroSerde(ORDER_V2, registry=registry)):
        expected = [outcome(partial(reader.deserialize, data, CTX)) for data in batch]
        got = reader.deserialize_many(batch, CTX)
        assert len(got) == len(batch)
        assert [("ok", g) if not isinstance(g, DecodeError) else (type(g), str(g)) for g in got] == expected
    assert [type(g).__name__ for g in got] == [
        "dict",
        "NoneType",
        "dict",
        "MalformedPayloadError",
        "WireFormatError",
        "WireFormatError",
        "UnknownSchemaError",
        "dict",
        "UnknownSchemaError",
        "MalformedPayloadError",
    ]


def test_deserialize_many_resolution_error_per_position(registry: SchemaRegistryClient) -> None:
    data = AvroSerde(ORDER_V1, registry=registry).serialize(ORDER, CTX)
    reader = AvroSerde(with_field(ORDER_V1, {"name": "region", "type": "string"}), registry=registry)
    got = reader.deserialize_many([data, None, data], CTX)
    assert isinstance(got[0], SchemaResolutionError)
    assert got[1] is None
    assert isinstance(got[2], SchemaResolutionError)


def test_deserialize_many_empty(registry: SchemaRegistryClient) -> None:
    assert AvroSerde(ORDER_V1, registry=registry).deserialize_many([], CTX) == []


# -- encoding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {**ORDER, "customer_id": "seven"},
        {**ORDER, "customer_id": 2**40},  # out of int range: fastavro would write it without validation
        {"order_id": "o-1"},
        "not a record",
    ],
)
def test_invalid_record_is_encode_error(registry: SchemaRegistryClient, record: Any) -> None:
    with pytest.raises(EncodeError):
        AvroSerde(ORDER_V1, registry=registry).serialize(record, CTX)


def test_invalid_record_without_validation_still_encode_error(registry: SchemaRegistryClient) -> None:
    with pytest.raises(EncodeError):
        AvroSerde(ORDER_V1, registry=registry, validate=False).serialize({**ORDER, "amount": "x"}, CTX)


def test_missing_field_with_default_is_filled(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V2, registry=registry)
    assert serde.deserialize(serde.serialize(ORDER, CTX), CTX) == {**ORDER, "currency": "EUR"}


@pytest.mark.parametrize(
    ("strategy", "is_key", "subject"),
    [
        (topic_name_strategy, False, "orders-value"),
        (topic_name_strategy, True, "orders-key"),
        (record_name_strategy, False, "streamsvc.demo.Order"),
        (topic_record_name_strategy, False, "orders-streamsvc.demo.Order"),
    ],
)
def test_subject_strategies(
    registry: SchemaRegistryClient,
    strategy: Callable[[str, bool, str | None], str],
    is_key: bool,
    subject: str,
) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry, subject_strategy=strategy)
    ctx = SerdeContext("orders", is_key=is_key)
    data = serde.serialize(ORDER, ctx)
    assert data is not None
    assert registry.get_subjects() == [subject]
    assert struct.unpack(">I", data[1:5])[0] == registry.get_latest_version(subject).schema_id


def test_record_name_strategy_needs_named_schema(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde('"string"', registry=registry, subject_strategy=record_name_strategy)
    with pytest.raises(ConfigError, match="named schema"):
        serde.serialize("x", CTX)


def test_registers_once_per_subject(registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = registry.register_schema

    def counting_register(subject: str, schema: Schema, normalize_schemas: bool = False) -> int:
        calls.append(subject)
        return original(subject, schema, normalize_schemas)

    monkeypatch.setattr(registry, "register_schema", counting_register)
    serde = AvroSerde(ORDER_V1, registry=registry, subject_strategy=record_name_strategy)
    for topic in ("orders", "orders", "orders-copy"):
        serde.serialize(ORDER, SerdeContext(topic))
    assert calls == ["streamsvc.demo.Order"]


def test_no_auto_register(registry: SchemaRegistryClient) -> None:
    serde = AvroSerde(ORDER_V1, registry=registry, auto_register=False)
    with pytest.raises(EncodeError, match="orders-value"):
        serde.serialize(ORDER, CTX)
    schema_id = registry.register_schema("orders-value", Schema(serde.schema_str, "AVRO"))
    data = serde.serialize(ORDER, CTX)
    assert data is not None
    assert struct.unpack(">I", data[1:5])[0] == schema_id


# -- configuration and registry binding ---------------------------------------------------------------


def test_invalid_schema_is_config_error() -> None:
    with pytest.raises(ConfigError):
        AvroSerde("{not json")
    with pytest.raises(ConfigError):
        AvroSerde({"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]})


def test_missing_registry_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMSVC_REGISTRY_URL", raising=False)
    serde = AvroSerde(ORDER_V1)
    with pytest.raises(ConfigError, match="STREAMSVC_REGISTRY_URL"):
        serde.serialize(ORDER, CTX)
    with pytest.raises(ConfigError, match="registry_url"):
        serde.deserialize(frame(1, b""), CTX)


def test_registry_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSVC_REGISTRY_URL", "mock://env")
    serde = AvroSerde(ORDER_V1)
    assert serde.deserialize(serde.serialize(ORDER, CTX), CTX) == ORDER


def test_bind_registry_late(registry: SchemaRegistryClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMSVC_REGISTRY_URL", raising=False)
    writer = AvroSerde(ORDER_V1)
    reader = AvroSerde(ORDER_V2)
    writer.bind_registry(registry)
    reader.bind_registry(registry)
    assert reader.deserialize(writer.serialize(ORDER, CTX), CTX) == {**ORDER, "currency": "EUR"}
    assert registry.get_subjects() == ["orders-value"]


def test_bind_registry_does_not_override_explicit_registry(registry: SchemaRegistryClient) -> None:
    other = registry_client("mock://other")
    serde = AvroSerde(ORDER_V1, registry=registry)
    serde.bind_registry(other)
    serde.serialize(ORDER, CTX)
    assert registry.get_subjects() == ["orders-value"]
    assert other.get_subjects() == []


def test_registry_url_is_resolved_lazily() -> None:
    serde = AvroSerde(ORDER_V1, registry_url="mock://lazy")
    serde.bind_registry(registry_client("mock://ignored"))  # registry_url wins
    assert serde.deserialize(serde.serialize(ORDER, CTX), CTX) == ORDER


def test_registry_client_factory() -> None:
    first, second = registry_client("mock://same"), registry_client("mock://same")
    assert isinstance(first, SchemaRegistryClient)
    first.register_schema("s", Schema(ORDER_V1, "AVRO"))
    assert second.get_subjects() == []  # every mock client has its own state
    with pytest.raises(ConfigError):
        registry_client("")


def test_schema_none_reads_each_record_with_its_writer_schema() -> None:
    registry = registry_client("mock://writer-schema")
    ctx = SerdeContext("orders")
    v1 = {"type": "record", "name": "O", "fields": [{"name": "a", "type": "int"}]}
    v2 = {
        "type": "record",
        "name": "O",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}],
    }
    reader = AvroSerde(None, registry=registry)
    first = AvroSerde(v1, registry=registry).serialize({"a": 1}, ctx)
    second = AvroSerde(v2, registry=registry, subject_strategy=lambda t, k, r: "other").serialize(
        {"a": 2, "b": "x"}, ctx
    )
    assert reader.deserialize(first, ctx) == {"a": 1}
    assert reader.deserialize(second, ctx) == {"a": 2, "b": "x"}
    with pytest.raises(EncodeError, match="only decodes"):
        reader.serialize({"a": 1}, ctx)
