"""Exactly-once dead letters for the Iceberg sink, whose commits land in Iceberg, not in Kafka.

The table is the commit log. One sink commit:

1. opens a Kafka transaction and writes the batch's dead letters to `<topic>.dlq` (partition = source
   partition), flushed; nothing is visible yet (`before_dead_letters`, `before_write` fault points);
2. commits the Iceberg snapshot with the new offsets *and*, in the table property
   `streamsvc.dlq.<group>.<topic>`, per source partition of the commit: the DLQ partition, an offset at
   or before its first record, and [offset, stage, error class, message] of each dead letter;
3. commits the Kafka transaction (`after_catalog_commit` before it).

A fenced Iceberg commit aborts the transaction: nothing of a zombie's batch shows. A crash between 2
and 3 leaves the table claiming dead letters the topic lacks; whoever owns the partition next (on
assignment, and after every rewind) reads the DLQ partition from the recorded offset with
`read_committed` -- which waits out any transaction still open -- and writes the missing ones again from
the source records, so each dead letter is in the DLQ exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from pyiceberg.table import Table

from streamsvc.dlq.records import (
    OutputRecord,
    SourceMessage,
    Stage,
    dead_letter,
    dlq_headers,
    error_class_of,
)
from streamsvc.eos.delivery import DeliveryReports
from streamsvc.eos.errors import AbortableError, DeadlineExceeded
from streamsvc.eos.transactions import ResumableCalls
from streamsvc.errors import FatalRuntimeError
from streamsvc.faults import FaultHook
from streamsvc.observability.logging import kafka_logging
from streamsvc.runtime.task import RetryBatch

DLQ_PREFIX = "streamsvc.dlq."
MESSAGE_CHARS = 200  # of each error message kept in the table property
READ_DEADLINE_S = 150.0  # > transaction.timeout.ms: an orphaned transaction is aborted meanwhile


def dlq_key(group: str, topic: str) -> str:
    return f"{DLQ_PREFIX}{group}.{topic}"


@dataclass(frozen=True)
class _Letter:
    partition: int  # source partition
    offset: int
    stage: Stage
    error_class: str
    message: str
    record: OutputRecord

    def entry(self) -> list[Any]:
        return [self.offset, self.stage, self.error_class, self.message[:MESSAGE_CHARS]]


class SinkDeadLetters:
    """The sink's dead letters of one commit, and their repair after a crash (see module doc)."""

    def __init__(
        self,
        producer: Producer,
        reports: DeliveryReports,
        calls: ResumableCalls,
        bootstrap: str,
        dlq_topic: str,
        dlq_partitions: int,
        source_topic: str,
        app: str,
        group: str,
        max_bytes: int,
        log: Any,
        faults: FaultHook,
    ) -> None:
        self.producer, self.reports, self.calls = producer, reports, calls
        self.bootstrap, self.dlq_topic, self.dlq_partitions = bootstrap, dlq_topic, dlq_partitions
        self.source_topic, self.app, self.group = source_topic, app, group
        self.max_bytes, self.log, self.faults = max_bytes, log, faults
        self.key = dlq_key(group, source_topic)
        self.pending: list[_Letter] = []
        self.entries: dict[int, dict[str, Any]] = {}  # of the staged commit, per source partition
        self.refused: set[tuple[int, int]] = set()  # (partition, offset) whose full letter was refused
        self.in_transaction = False

    def add(self, msg: SourceMessage, stage: Stage, exc: BaseException | str) -> None:
        p, offset = msg.partition() or 0, msg.offset() or 0
        limit = 0 if (p, offset) in self.refused else self.max_bytes
        rec = dead_letter(msg, self.dlq_topic, stage, exc, self.app, limit)
        cls = error_class_of(exc)
        self.pending.append(_Letter(p, offset, stage, cls, str(exc), rec))

    def discard(self) -> None:
        self.pending.clear()
        self.entries.clear()

    # ---- the commit ----------------------------------------------------------------------------

    def stage(self) -> None:
        """Open the transaction and write the pending dead letters (step 1); no-op without any."""
        self.entries = {}
        if not self.pending:
            return
        self.reports.take()
        self.producer.begin_transaction()
        self.in_transaction = True
        self.faults("before_dead_letters")
        for d in self.pending:
            self._produce(d.record, self._dlq_partition(d.partition))
        deadline = self.calls.deadline()
        self.calls.flush(self.producer, deadline)
        firsts = dict(self.reports.first_offsets)  # where this commit's dead letters start
        rejected, failed = self.reports.take()
        if rejected or failed:
            refused = {(r.value, r.key) for r in rejected}
            self.refused |= {
                (d.partition, d.offset) for d in self.pending if (d.record.value, d.record.key) in refused
            }
            self.abort()
            if rejected:
                raise RetryBatch(f"{self.dlq_topic} refused dead letters: {rejected[0].error}")
            raise AbortableError(f"dead letters to {self.dlq_topic} failed: {failed[:3]}")
        for d in self.pending:
            dp = self._dlq_partition(d.partition)
            entry = self.entries.setdefault(
                d.partition, {"partition": dp, "from": firsts[(self.dlq_topic, dp)], "records": []}
            )
            entry["records"].append(d.entry())

    def properties(self, table: Table, partitions: Iterable[int]) -> dict[str, str]:
        """The DLQ property after this commit: this commit's entries for its partitions (step 2)."""
        current: dict[str, Any] = orjson.loads(table.properties.get(self.key) or "{}")
        for p in partitions:
            entry = self.entries.get(p)
            if entry is None:
                current.pop(str(p), None)
            else:
                current[str(p)] = entry
        return {self.key: orjson.dumps(current).decode()}

    def commit(self) -> None:
        """Commit the transaction (step 3). The table already holds these dead letters, so a failed
        commit writes them again in a new transaction."""
        if not self.in_transaction:
            self.discard()
            return
        for attempt in range(1, 4):
            try:
                self.calls.resumable(
                    lambda t: self.producer.commit_transaction(t), "commit_transaction", self.calls.deadline()
                )
                self.in_transaction = False
                self.discard()
                return
            except AbortableError as exc:
                self.log.warning("dead_letter_commit_retry", attempt=attempt, error=str(exc))
                self.abort(keep=True)
                self.producer.begin_transaction()
                self.in_transaction = True
                for d in self.pending:
                    self._produce(d.record, self._dlq_partition(d.partition))
        raise FatalRuntimeError(
            f"dead letters to {self.dlq_topic} could not be committed; the next owner repairs them"
        )

    def abort(self, keep: bool = False) -> None:
        if self.in_transaction:
            self.in_transaction = False
            try:
                self.calls.resumable(
                    lambda t: self.producer.abort_transaction(t), "abort_transaction", self.calls.deadline()
                )
            finally:
                self.reports.take()
        if not keep:
            self.discard()

    # ---- repair ------------------------------------------------------------------------------------

    def repair(self, table: Table | None, offsets: Mapping[int, int], partitions: Iterable[int]) -> int:
        """Write again the dead letters the table records for `partitions` (below their committed
        offsets) that the DLQ topic lacks; returns how many."""
        if table is None:
            return 0
        entries: dict[str, Any] = orjson.loads(table.properties.get(self.key) or "{}")
        lost: dict[int, dict[int, list[Any]]] = {}
        for p in partitions:
            entry = entries.get(str(p))
            recorded = {r[0]: r for r in (entry or {}).get("records", []) if r[0] < offsets.get(p, 0)}
            if not recorded:
                continue
            assert entry is not None
            present = self._present(int(entry["partition"]), int(entry["from"]), p)
            missing = {o: r for o, r in recorded.items() if o not in present}
            if missing:
                lost[p] = missing
        if not lost:
            return 0
        sources = self._read_sources(lost)
        self.producer.begin_transaction()
        self.in_transaction = True
        for msg in sources:
            p, offset = msg.partition() or 0, msg.offset() or 0
            _, stage, cls, message = lost[p][offset]
            rec = dead_letter(msg, self.dlq_topic, stage, message, self.app, self.max_bytes, error_class=cls)
            self._produce(rec, self._dlq_partition(p))
        self.calls.flush(self.producer, self.calls.deadline())
        self.calls.resumable(
            lambda t: self.producer.commit_transaction(t), "commit_transaction", self.calls.deadline()
        )
        self.in_transaction = False
        self.log.warning("dead_letters_repaired", count=len(sources), partitions=sorted(lost))
        return len(sources)

    def _present(self, dlq_partition: int, start: int, source_partition: int) -> set[int]:
        """Source offsets of `source_partition` dead-lettered by this app in the DLQ partition from
        `start` on, committed transactions only."""
        found: set[int] = set()
        for msg in _read(self.bootstrap, self.dlq_topic, dlq_partition, start, None):
            h = dlq_headers(msg.headers())
            if (
                h.get("dlq.app") == self.app
                and h.get("dlq.source.topic") == self.source_topic
                and h.get("dlq.source.partition") == str(source_partition)
            ):
                found.add(int(h.get("dlq.source.offset", "-1")))
        return found

    def _read_sources(self, lost: Mapping[int, Mapping[int, Any]]) -> list[Message]:
        out: list[Message] = []
        for p, wanted in sorted(lost.items()):
            keep = set(wanted)
            out += [
                m
                for m in _read(self.bootstrap, self.source_topic, p, min(keep), max(keep) + 1)
                if m.offset() in keep
            ]
        return out

    def _dlq_partition(self, source_partition: int) -> int:
        return source_partition % self.dlq_partitions

    def _produce(self, rec: OutputRecord, partition: int) -> None:
        while True:
            try:
                self.producer.produce(
                    rec.topic,
                    rec.value,
                    rec.key,
                    partition=partition,
                    headers=rec.headers,
                    timestamp=rec.timestamp_ms,
                )
                return
            except BufferError:
                self.producer.poll(0.05)


def _read(bootstrap: str, topic: str, partition: int, start: int, stop: int | None) -> list[Message]:
    """Committed records of one partition from `start` to `stop` (None: its current end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"streamsvc-dlq-repair-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            **kafka_logging(component="dlq-repair", topic=topic, partition=partition),
        }
    )
    out: list[Message] = []
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        end = high if stop is None else min(stop, high)
        if end <= start:
            return out
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + READ_DEADLINE_S
        while True:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is None and (msg.offset() or 0) < end:
                    out.append(msg)
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= end:  # read_committed: the position passes markers, waits on open transactions
                return out
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"reading {topic}:{partition} stalled at {position} of {end}")
    except KafkaException as exc:
        raise FatalRuntimeError(f"cannot read {topic}:{partition} to repair dead letters: {exc}") from exc
    finally:
        consumer.close()
