"""Changelog topics: the durable copy of every state store partition.

A stateful operator reports the entries it changed in a batch; the agent writes them to the store's
compacted changelog topic, partition = source partition, in the same transaction as the outputs and
the consumed offsets. Each record carries the source offset it reflects (header
`streamsvc.source.offset`): restore applies only entries up to the committed source offset, so an
update whose input was not committed is never applied, whatever the commit protocol; after an
offset reset to the beginning the state starts empty, so a replay reproduces its outputs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamsvc.observability.logging import kafka_logging

SOURCE_OFFSET_HEADER = "streamsvc.source.offset"


class Changelogged(Protocol):
    """A stateful operator whose per-partition state is kept in a changelog topic."""

    name: str

    def changes(self, partition: int) -> Mapping[bytes, bytes | None]: ...
    def restore(self, partition: int, entries: Iterable[tuple[bytes, bytes | None]]) -> None: ...
    def drop(self, partition: int) -> None: ...


def changelog_topic(app_id: str, agent: str, store: str) -> str:
    return f"{app_id}.{agent}.{store}.changelog"


CHANGELOG_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


def write_changes(
    producer: Producer, topic: str, partition: int, changes: Mapping[bytes, bytes | None], source_offset: int
) -> int:
    """Produce `changes` (None = delete) to `topic`/`partition`; returns how many records were written."""
    headers: list[tuple[str, str | bytes | None]] = [(SOURCE_OFFSET_HEADER, str(source_offset).encode())]
    for key, value in changes.items():
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    return len(changes)


def read_changelog(
    bootstrap: str,
    topic: str,
    partition: int,
    up_to_source_offset: int | None,
    stall_timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[bytes, bytes | None]]:
    """The committed entries of one changelog partition, in order, whose source offset tag (the next
    source offset when they were written) is at most `up_to_source_offset` (all of them when None).
    Fails only when the read makes no progress for `stall_timeout` seconds. `progress(offsets read,
    offsets to read)` is called as the read advances (restore metrics)."""
    return read_changelog_from(
        bootstrap, topic, partition, up_to_source_offset, None, stall_timeout, progress
    )[0]


def read_changelog_from(
    bootstrap: str,
    topic: str,
    partition: int,
    up_to_source_offset: int | None,
    start_offset: int | None,
    stall_timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[bytes, bytes | None]], int]:
    """`read_changelog` from `start_offset` on (None: the beginning), and the offset the read reached:
    the partition's end, the checkpoint of a local store that applied the entries (an end below
    `start_offset` means the log was deleted and recreated since)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"streamsvc-restore-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **kafka_logging(component="restore", topic=topic, partition=partition),
        }
    )
    entries: list[tuple[bytes, bytes | None]] = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        if start_offset is not None:
            low = max(low, start_offset)
        if progress is not None:
            progress(0, max(0, high - low))
        if high <= low:
            return entries, high  # below `start_offset`: the log was recreated since that checkpoint
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING if start_offset is None else low)])
        deadline, last = time.monotonic() + stall_timeout, -1
        while True:
            for msg in consumer.consume(num_messages=10_000, timeout=0.1):
                if msg.error() is not None:
                    continue
                tag = dict(msg.headers() or []).get(SOURCE_OFFSET_HEADER)
                if up_to_source_offset is not None and tag is not None and int(tag) > up_to_source_offset:
                    continue
                entries.append((msg.key() or b"", msg.value()))
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if progress is not None and position >= 0:
                progress(min(position, high) - low, high - low)
            # With read_committed the position passes transaction markers, so it can reach `high`.
            if position >= high:
                return entries, position
            if position != last:
                last, deadline = position, time.monotonic() + stall_timeout
            elif time.monotonic() > deadline:
                raise TimeoutError(f"restoring {topic}:{partition} stalled at {position} of {high}")
    finally:
        consumer.close()
