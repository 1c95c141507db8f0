"""Encode generated events and produce them to Kafka, rate-limited or as fast as possible."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streamsvc.generate.shop import _BAD_MAGIC, _UNKNOWN_ID, SCHEMAS, Event, load_schema
from streamsvc.serde.avro import AvroSerde
from streamsvc.serde.base import SerdeContext

KafkaRecord = tuple[str, bytes | None, bytes | None, int]
"""(real topic, key, value, timestamp ms)."""


class Encoder:
    """Events -> Kafka records: logical topics mapped through `topics`, CDC values as Avro (Confluent
    wire format, schemas registered under `<real topic>-value` on first use), clicks as orjson."""

    def __init__(self, registry: SchemaRegistryClient, topics: Mapping[str, str] | None = None) -> None:
        self.topics = dict(topics or {})
        self._registry = registry
        self._serdes = {name: AvroSerde(load_schema(name), registry=registry) for name in SCHEMAS}

    def topic(self, logical: str) -> str:
        return self.topics.get(logical, logical)

    def register(self) -> dict[str, int]:
        """Register every shop schema in version order (v1 before its evolution); returns name -> id."""
        return {
            name: self._registry.register_schema(
                f"{self.topic(topic)}-value", Schema(load_schema(name), "AVRO")
            )
            for name, topic in SCHEMAS.items()
        }

    def encode(self, event: Event) -> KafkaRecord:
        topic = self.topic(event.topic)
        value: bytes | None
        if event.poison == "bad_magic":
            value = _BAD_MAGIC
        elif event.poison == "unknown_schema_id":
            value = _UNKNOWN_ID
        elif event.poison == "truncated_json":
            text = orjson.dumps(event.value)
            value = text[: len(text) // 2]
        elif event.value is None:
            value = None
        elif event.schema is not None:
            value = self._serdes[event.schema].serialize(event.value, SerdeContext(topic))
        else:
            value = orjson.dumps(event.value)
        return topic, event.key, value, event.timestamp_ms


class Progress:
    """A progress line on one rewritten terminal line (`\\r`), at most every `every_s` seconds."""

    def __init__(self, out: IO[str] | None = None, every_s: float = 0.5) -> None:
        self.out = out or sys.stderr
        self.every_s = every_s
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            self.out.write(f"\r{text}\x1b[K")
            self.out.flush()

    def done(self) -> None:
        self.out.write("\n")
        self.out.flush()


def produce(
    bootstrap: str,
    records: Iterable[KafkaRecord],
    rate: float = 0.0,
    progress: Callable[[Counter[str], float], None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Counter[str]:
    """Produce `records` in order (idempotent: retries never reorder a partition), at most `rate` per
    second (0: as fast as possible); `progress(counts, elapsed)` is called as records go. Returns the
    count per topic. Raises RuntimeError when records stay undelivered."""
    conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "log_level": 0,
        **(extra or {}),
    }
    producer = Producer(conf)
    counts: Counter[str] = Counter()
    started = time.monotonic()
    for n, (topic, key, value, ts) in enumerate(records, 1):
        if rate > 0:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                producer.poll(ahead)
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        counts[topic] += 1
        producer.poll(0)
        if progress is not None:
            progress(counts, time.monotonic() - started)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} generated records left undelivered")
    return counts
