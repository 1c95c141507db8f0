"""Poison records of every kind land in the DLQ with the documented headers and their original bytes,
in the same transaction, while the worker keeps going; the accounting invariant holds exactly."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.schema_registry import Schema
from prometheus_client import REGISTRY

from streamsvc.config import Settings
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import AvroSerde, JsonSerde, SerdeContext
from streamsvc.topology import Topology
from streamsvc.validation import in_range, not_null
from tests.support import produce

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "demo"
V1 = (SCHEMAS / "order_v1.avsc").read_text()
V2 = (SCHEMAS / "order_v2.avsc").read_text()
WITHOUT_AMOUNT = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "streamsvc.demo",
        "fields": [
            {"name": "order_id", "type": "string"},
            {"name": "customer_id", "type": "int"},
            {"name": "ts_ms", "type": "long"},
        ],
    }
)


def unlucky(order: dict[str, Any]) -> dict[str, Any]:
    if order["customer_id"] == 13:
        raise RuntimeError("customer 13 is unlucky")
    return order


def order(i: int, customer: int = 1, amount: float = 10.0) -> dict[str, Any]:
    return {"order_id": f"o{i}", "customer_id": customer, "amount": amount, "ts_ms": 1_000 + i, "note": None}


def test_every_poison_kind_is_dead_lettered(bootstrap: str, names, schema_registry, subjects) -> None:  # type: ignore[no-untyped-def]
    registry = schema_registry
    avro_topic, json_topic = names.topic("orders_avro"), names.topic("orders_json")
    subjects.track(f"{avro_topic}-value")
    # One subject holds v1, v2 and a schema without `amount`, whatever the registry's global mode.
    registry.register_schema(f"{avro_topic}-value", Schema(V1, "AVRO"))
    registry.set_compatibility(f"{avro_topic}-value", "NONE")
    names.track(avro_topic + ".dlq", json_topic + ".dlq", names("out_avro"), names("out_json"))
    ctx = SerdeContext(avro_topic)
    v1_writer, v2_writer = AvroSerde(V1, registry=registry), AvroSerde(V2, registry=registry)
    no_amount = AvroSerde(WITHOUT_AMOUNT, registry=registry)
    good_v1 = v1_writer.serialize(order(1), ctx)
    good_v2 = v2_writer.serialize({**order(2), "currency": "USD"}, ctx)
    assert good_v1 is not None and good_v2 is not None
    avro_records: list[tuple[str, bytes | None]] = [
        ("ok", good_v1),
        ("ok", good_v2),
        ("decode:MalformedPayloadError", good_v2[:-4]),  # truncated Avro
        ("ok", v1_writer.serialize(order(3), ctx)),
        ("decode:WireFormatError", b"\x01" + good_v1[1:]),  # wrong magic byte
        ("decode:UnknownSchemaError", b"\x00" + struct.pack(">I", 987654) + good_v1[5:]),
        (
            "decode:SchemaResolutionError",
            no_amount.serialize({"order_id": "x", "customer_id": 1, "ts_ms": 5}, ctx),
        ),
        ("validate:ExpectationFailed", v2_writer.serialize(order(4, amount=-1.0), ctx)),
        ("process:RuntimeError", v1_writer.serialize(order(5, customer=13), ctx)),
        ("ok", v2_writer.serialize(order(6), ctx)),
    ]
    json_records: list[tuple[str, bytes | None]] = [
        ("ok", orjson.dumps(order(10))),
        ("decode:MalformedPayloadError", b'{"order_id": "o11", "customer_id": '),  # invalid JSON
        (
            "validate:ExpectationFailed",
            orjson.dumps({k: v for k, v in order(12).items() if k != "customer_id"}),
        ),
        ("validate:ExpectationFailed", orjson.dumps(order(13, amount=1e9))),
        ("process:RuntimeError", orjson.dumps(order(14, customer=13))),
        ("ok", orjson.dumps(order(15))),
    ]
    headers = [("trace-id", b"abc123")]
    produce(
        bootstrap,
        avro_topic,
        [(f"k{i}".encode(), v) for i, (_, v) in enumerate(avro_records)],
        headers=headers,
    )
    produce(
        bootstrap,
        json_topic,
        [(f"k{i}".encode(), v) for i, (_, v) in enumerate(json_records)],
        headers=headers,
    )

    topology = Topology("dead-letters")
    amount_ok = in_range("amount", min=0, max=1_000_000)
    (
        topology.source("orders_avro", value_serde=AvroSerde(V2, registry=registry), expectations=[amount_ok])
        .map(unlucky)
        .to("out_avro", value_serde=JsonSerde())
    )
    (
        topology.source(
            "orders_json", value_serde=JsonSerde(), expectations=[not_null("customer_id"), amount_ok]
        )
        .map(unlucky)
        .to("out_json", value_serde=JsonSerde())
    )
    app = names("app")
    topics = {"orders_avro": avro_topic, "orders_json": json_topic}
    topics |= {"out_avro": names("out_avro"), "out_json": names("out_json")}
    settings = Settings(app_id=app, bootstrap_servers=bootstrap, instance_id="dlq-0", topics=topics)
    worker = Worker([topology], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    assert not worker.alive

    for topic, records, out in (
        (avro_topic, avro_records, "out_avro"),
        (json_topic, json_records, "out_json"),
    ):
        dlq = read_all(bootstrap, topic + ".dlq")
        poison = [(i, kind, value) for i, (kind, value) in enumerate(records) if kind != "ok"]
        assert len(dlq) == len(poison)
        by_offset = {int(dict(m.headers())["dlq.source.offset"]): m for m in dlq}
        for offset, kind, value in poison:
            msg = by_offset[offset]
            h = {k: v.decode() for k, v in msg.headers()}
            stage, error = kind.split(":")
            assert msg.value() == value, "the DLQ keeps the original bytes"
            assert msg.key() == f"k{offset}".encode()
            assert h["trace-id"] == "abc123", "original headers are kept"
            assert h["dlq.stage"] == stage
            assert h["dlq.error.class"].rsplit(".", 1)[-1] == error
            assert h["dlq.error.message"]
            assert h["dlq.source.topic"] == topic
            assert h["dlq.source.partition"] == "0"
            assert int(h["dlq.source.timestamp"]) > 0
            assert h["dlq.app"] == app
        emitted = [orjson.loads(m.value()) for m in read_all(bootstrap, topics[out])]
        assert len(emitted) == sum(kind == "ok" for kind, _ in records)

        labels = {"app": app, "agent": "dead-letters", "topic": topic}
        consumed = REGISTRY.get_sample_value("streamsvc_records_consumed_total", labels)
        emitted_n = REGISTRY.get_sample_value("streamsvc_records_emitted_total", labels) or 0
        filtered_n = REGISTRY.get_sample_value("streamsvc_records_filtered_total", labels) or 0
        dead_by_stage = Counter(kind.split(":")[0] for kind, _ in records if kind != "ok")
        dead_n = 0.0
        for stage, n in dead_by_stage.items():
            got = dead_lettered(labels, stage)
            assert got == n, f"{stage}: {got} != {n}"
            dead_n += got
        assert consumed == len(records)
        assert consumed == emitted_n + filtered_n + dead_n

    # Schema evolution at read time: v1 records read with the v2 reader get the default currency.
    avro_out = [orjson.loads(m.value()) for m in read_all(bootstrap, topics["out_avro"])]
    assert [o["currency"] for o in avro_out] == ["EUR", "USD", "EUR", "EUR"]
    assert [o["order_id"] for o in avro_out] == ["o1", "o2", "o3", "o6"]


def dead_lettered(labels: dict[str, str], stage: str) -> float:
    """`streamsvc_records_dead_lettered_total` of one stage, summed over error classes."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        if family.name == "streamsvc_records_dead_lettered"
        for s in family.samples
        if s.name.endswith("_total") and s.labels.items() >= {**labels, "stage": stage}.items()
    )
