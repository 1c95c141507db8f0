"""Keeps replicated (global) tables current: every instance reads every partition of the table topic.

The reader sits outside the consumer group and outside the transaction: the table topic is its own
durable copy, so at start-up the agent reads it to the end offsets before processing anything, and then
applies new changes at the start of every poll-loop turn. Joins against it see the table as of the
record's arrival (Kafka Streams' GlobalKTable semantics).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streamsvc.dlq.records import error_class_of
from streamsvc.errors import DecodeError
from streamsvc.observability import metrics as m
from streamsvc.observability.logging import kafka_logging
from streamsvc.runtime.compiled import CompiledGlobalTable
from streamsvc.serde.base import SerdeContext


class GlobalTableReader:
    def __init__(self, table: CompiledGlobalTable, bootstrap: str, log: Any, labels: dict[str, str]) -> None:
        self.table = table
        self.log = log
        self.labels = labels
        self.ctx = SerdeContext(table.topic)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"streamsvc-global-{uuid.uuid4().hex}",  # never committed: assignment only
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                **kafka_logging(**labels, component="global-table"),
            }
        )

    def start(self, stall_timeout_s: float = 120.0) -> int:
        """Assign every partition from the beginning and apply everything up to the current end.
        Fails only when no partition makes progress for `stall_timeout_s`."""
        meta = self.consumer.list_topics(self.table.topic, timeout=30)
        partitions = sorted(meta.topics[self.table.topic].partitions)
        self.consumer.assign([TopicPartition(self.table.topic, p, OFFSET_BEGINNING) for p in partitions])
        bounds = {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.table.topic, p), timeout=30)
            for p in partitions
        }
        ends = {p: high for p, (_, high) in bounds.items()}
        # A compacted partition whose records were all deleted has low == high > 0: nothing to read.
        pending = {p for p, (low, high) in bounds.items() if high > low}
        applied, last_progress, seen = 0, time.monotonic(), -1
        while pending:
            applied += self._apply(self.consumer.consume(num_messages=10_000, timeout=0.5))
            positions = self.consumer.position([TopicPartition(self.table.topic, p) for p in list(pending)])
            for tp in positions:
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
            progress = applied + sum(max(tp.offset, 0) for tp in positions)
            if progress != seen:
                seen, last_progress = progress, time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                raise TimeoutError(f"global table {self.table.name}: partitions {sorted(pending)} stalled")
        m.STATE_RESTORED.labels(**self.labels, store=self.table.name).inc(applied)
        self.log.info(
            "global_table_loaded", store=self.table.name, entries=applied, partitions=len(partitions)
        )
        return applied

    def poll(self) -> int:
        """Apply the changes that arrived since the last call, without waiting."""
        return self._apply(self.consumer.consume(num_messages=1_000, timeout=0))

    def _apply(self, msgs: list[Message]) -> int:
        engine, serde, applied = self.table.engine, self.table.value_serde, 0
        for msg in msgs:
            if msg.error() is not None:
                continue
            try:
                change = serde.deserialize(msg.value(), self.ctx)
                engine.apply(msg.partition() or 0, msg.key() or b"", change)
                applied += 1
            except (DecodeError, ValueError, TypeError) as exc:
                # The topic stays the source of truth; the bad change is reported, never applied.
                m.count_dead_lettered(self.labels, self.table.topic, "decode", error_class_of(exc))
                self.log.warning(
                    "global_table_change_skipped",
                    store=self.table.name,
                    partition=msg.partition(),
                    offset=msg.offset(),
                    error=f"{type(exc).__name__}: {exc}",
                )
        engine.discard_changes()
        return applied

    def close(self) -> None:
        self.consumer.close()
