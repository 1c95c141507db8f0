"""`IcebergSinkAgent`: one Kafka topic -> one Iceberg table, exactly once (BRIEF §3.7).

The consumer group only assigns partitions: positions live in the table. On assignment the agent reads
the offsets the table holds and seeks there; records are decoded and buffered as Arrow; on the interval
(or size threshold) undecodable records are flushed to `<topic>.dlq`, then the batch is appended with
the new offsets by a fenced `TableWriter` commit. A fenced writer (a zombie, or a peer that took over its
partitions) drops its buffer and re-seeks to what the table holds. Offsets reach Kafka too, after the
Iceberg commit, for lag monitoring only; they are never read back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from pyiceberg.catalog import Catalog

from streamsvc.config import Settings
from streamsvc.dlq.records import Stage, dead_letter
from streamsvc.errors import DecodeError, FatalRuntimeError
from streamsvc.observability import metrics as m
from streamsvc.observability.graph import sink_graph
from streamsvc.observability.http import HealthState
from streamsvc.observability.lag import ConsumerLag
from streamsvc.observability.logging import get_logger, kafka_logging
from streamsvc.observability.recorder import AgentMetrics
from streamsvc.runtime.fatal import FatalLatch
from streamsvc.runtime.topics import admin_client, ensure_topics, partition_counts
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.debezium import ChangeRecord
from streamsvc.sinks.iceberg import metrics as im
from streamsvc.sinks.iceberg.faults import FaultHook, faults_from_env
from streamsvc.sinks.iceberg.maintenance import maintain
from streamsvc.sinks.iceberg.merge import MergeReport, SilverMerger
from streamsvc.sinks.iceberg.rows import BatchBuilder, Meta, cdc_row, concat, meta_schema
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.sinks.iceberg.writer import TableWriter


class IcebergSinkAgent(FatalLatch):
    """Runs one `IcebergSinkSpec` until `stop` is set, the input is caught up, or a fatal error."""

    def __init__(
        self,
        spec: IcebergSinkSpec,
        settings: Settings,
        catalog: Catalog,
        until_caught_up: bool = False,
        faults: FaultHook | None = None,
        kafka_commit: bool = True,
        on_commit: Callable[[int], None] | None = None,
        health: HealthState | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.topic = settings.topic(spec.source)
        self.dlq_topic = f"{self.topic}{settings.dlq_suffix}"
        self.group = f"{settings.effective_group_id}.{spec.name}"
        self.instance = settings.effective_instance_id
        self.until_caught_up = until_caught_up
        self.kafka_commit = kafka_commit
        self.on_commit = on_commit
        self.log = get_logger(app=settings.app_id, agent=spec.name, table=spec.table, topic=self.topic)
        faults = faults if faults is not None else faults_from_env()
        self.writer = TableWriter(
            catalog,
            spec.table,
            self.group,
            self.topic,
            writer_id=f"{settings.app_id}.{spec.name}.{self.instance}",
            partition_by=spec.partition_fields,
            properties=dict(spec.table_properties),
            faults=faults,
            log=self.log,
        )
        self.merger = (
            SilverMerger(
                catalog,
                spec.table,
                spec.silver_table,
                list(spec.key_columns),
                self.group,
                self.topic,
                faults=faults,
                log=self.log,
            )
            if spec.silver_table
            else None
        )
        self._last_merge = time.monotonic()
        self.commit_seconds: deque[float] = deque(maxlen=100_000)  # duration of each committed commit
        self.maintain_seconds: deque[float] = deque(maxlen=10_000)
        self.builder = BatchBuilder(fixed=spec.schema, cdc=spec.cdc)
        self._labels = {"app": settings.app_id, "agent": spec.name}
        self._ilabels = {**self._labels, "table": spec.table}
        self._assigned: set[int] = set()
        self._expected: dict[int, int | None] = {}  # what the table holds, as far as this writer knows
        self._positions: dict[int, int] = {}  # next offset after what is buffered
        self._end_at_assign: dict[int, int] = {}
        self._fetched: set[int] = set()  # partitions with a record since the last assign/seek
        self._buffer: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0
        self._pending = {"consumed": 0, "rows": 0, "dead": 0}
        self._last_commit = time.monotonic()
        self._fatal = None
        self.committed_rows = 0
        self.commits = 0
        self.health = health or HealthState()  # observability hooks: probes, metrics, status entry, lag
        graph = sink_graph(self.topic, self.dlq_topic, spec.table, spec.silver_table, spec.name)
        self.obs = AgentMetrics(settings.app_id, spec.name, self.log, graph, "iceberg", "exactly_once")
        table_lag = im.OFFSET_LAG.labels(**self._ilabels).set
        held = lambda: {(self.topic, p): self._expected.get(p) for p in self._assigned}  # noqa: E731
        self.lag = ConsumerLag(self._labels, held, read_committed=True, on_total=table_lag)

    # ---- set-up -------------------------------------------------------------------------------

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range,roundrobin",  # eager: on_assign seeks via assign()
            "error_cb": self._on_client_error,
            **self.lag.client_config(),  # observability hook: lag against the table's offsets
            **kafka_logging(app=s.app_id, agent=self.spec.name, table=self.spec.table),  # observability hook
        }
        if s.static_membership:
            conf["group.instance.id"] = f"{self.spec.name}.{self.instance}"
        conf.update(s.consumer)
        return conf

    def _producer_config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": s.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": self._on_client_error,
            **kafka_logging(app=s.app_id, agent=self.spec.name, table=self.spec.table),  # observability hook
            **{k: v for k, v in s.producer.items() if k != "transactional.id"},
        }

    # ---- main loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume and commit until stopped; finishes the open commit before returning."""
        s = self.settings
        admin = admin_client(s.bootstrap_servers)
        parts = partition_counts(admin, [self.topic]).get(self.topic, 1)
        ensure_topics(admin, {self.dlq_topic: parts})
        self.consumer = Consumer(self._consumer_config())
        self.producer = Producer(self._producer_config())
        self.consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.log.info("iceberg_sink_started", group=self.group, interval_s=self.spec.commit_interval_s)
        poll_timeout = s.poll_timeout_ms / 1000.0
        try:
            while not stop.is_set():
                msgs = self.consumer.consume(num_messages=s.batch_size, timeout=poll_timeout)
                self._raise_if_fatal()
                self.health.polled(self.spec.name)  # observability hook: liveness
                if msgs:
                    self._handle(msgs)
                if self._due():
                    self.commit()
                if self.merger is not None and self._merge_due():
                    self.merge()
                if self.until_caught_up and self._caught_up():
                    self.commit()
                    if self.merger is not None:
                        self.merge()
                    self.log.info("caught_up", offsets=self._expected, rows=self.committed_rows)
                    break
            self.commit()
            self.log.info("iceberg_sink_stopping", rows=self.committed_rows, commits=self.commits)
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            self.log.warning("consumer_close_failed", error=str(exc))
        self.producer.flush(10)
        self.health.set_ready(self.spec.name, False)  # observability hook: readiness
        self._raise_if_fatal()

    def _handle(self, msgs: list[Message]) -> None:
        rows: list[dict[str, Any]] = []
        metas: list[Meta] = []
        extras: list[dict[str, Any]] = []
        sources: list[Message] = []
        serde, ctx = self.spec.value_serde, SerdeContext(self.topic)
        self.obs.batch(msgs)  # observability hook: end-to-end latency samples
        for msg in msgs:
            if not self._is_record(msg):
                continue
            p, off = msg.partition() or 0, msg.offset() or 0
            if p not in self._assigned or off < self._positions.get(p, self._expected.get(p) or 0):
                continue  # fetched before a revoke or a re-seek
            self._positions[p] = off + 1
            self._fetched.add(p)
            self._pending["consumed"] += 1
            try:
                value = serde.deserialize(msg.value(), ctx)
            except DecodeError as exc:
                self._dead_letter(msg, "decode", exc)
                continue
            if self.spec.cdc:
                if not isinstance(value, ChangeRecord):
                    self._dead_letter(msg, "validate", "value serde did not produce a ChangeRecord")
                    continue
                row, extra = cdc_row(value)
                extras.append(extra)
            elif isinstance(value, dict):
                row = value
            else:
                self._dead_letter(
                    msg, "validate", f"record value must be an object, got {type(value).__name__}"
                )
                continue
            ts_type, ts = msg.timestamp()
            key = msg.key()
            rows.append(row)
            metas.append(
                Meta(self.topic, p, off, ts if ts_type else None, key if isinstance(key, bytes) else None)
            )
            sources.append(msg)
        if not rows:
            return
        batch, failures = self.builder.build(rows, metas, extras if self.spec.cdc else None)
        for i, error in failures:
            self._dead_letter(sources[i], "process", error)
        if batch is not None and batch.num_rows:
            self._buffer.append(batch)
            self._rows += batch.num_rows
            self._bytes += batch.nbytes
            self._pending["rows"] += batch.num_rows

    def _dead_letter(self, msg: Message, stage: Stage, exc: BaseException | str) -> None:
        rec = dead_letter(msg, self.dlq_topic, stage, exc, self.settings.app_id)
        while True:
            try:
                self.producer.produce(
                    rec.topic, rec.value, rec.key, headers=rec.headers, timestamp=max(rec.timestamp_ms, 0)
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        self._pending["dead"] += 1
        self.obs.dead_lettered(self.topic, stage, exc)  # observability hook: counted at the commit

    def _due(self) -> bool:
        if self._rows >= self.spec.max_rows or self._bytes >= self.spec.max_bytes:
            return True
        return time.monotonic() - self._last_commit >= self.spec.commit_interval_s

    def _caught_up(self) -> bool:
        if not self._assigned:
            return False
        positions = self._consumer_positions()
        return all(
            max(positions.get(p, 0), self._expected.get(p) or 0) >= self._end_at_assign.get(p, 0)
            for p in self._assigned
        )

    def _consumer_positions(self) -> dict[int, int]:
        """Consumer positions (past control records) of partitions read since their last seek."""
        tps = self.consumer.position(
            [TopicPartition(self.topic, p) for p in sorted(self._fetched & self._assigned)]
        )
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}

    # ---- commit -------------------------------------------------------------------------------

    def commit(self) -> bool:
        """Commit what is buffered (or only advanced offsets); False when fenced or nothing to do."""
        self._last_commit = time.monotonic()
        positions = dict(self._positions)
        for p, pos in self._consumer_positions().items():  # control records and idle advances
            if pos > positions.get(p, self._expected.get(p) or 0):
                positions[p] = pos
        positions = {p: o for p, o in positions.items() if p in self._assigned and o != self._expected.get(p)}
        if not positions and not self._buffer:
            return False
        if self.producer.flush(30) > 0:  # DLQ records must be durable before the offsets move
            raise FatalRuntimeError(f"dead-letter records to {self.dlq_topic} were not delivered in 30 s")
        data = concat(self._buffer) if self._buffer else meta_schema(self.spec.cdc).empty_table()
        started = time.perf_counter()
        outcome = self.writer.commit(data, positions, {p: self._expected.get(p) for p in positions})
        im.COMMIT_DURATION.labels(**self._ilabels).observe(time.perf_counter() - started)
        if not outcome.committed:
            im.COMMITS.labels(**self._ilabels, outcome="fenced").inc()
            self.obs.aborted()  # observability hook
            self._reset_to(outcome.offsets)
            return False
        self.commit_seconds.append(time.perf_counter() - started)
        im.COMMITS.labels(**self._ilabels, outcome="committed").inc()
        im.ROWS_WRITTEN.labels(**self._ilabels).inc(data.num_rows)
        self._observe_table()
        for p in positions:
            self._expected[p] = outcome.offsets[p]
        self._positions.clear()
        self._clear_buffer()
        self.commits += 1
        self.committed_rows += data.num_rows
        self.obs.count(self.topic, self._pending["consumed"], self._pending["rows"])  # observability hook
        self.obs.committed(None, self.commit_seconds[-1], {self.topic: positions})  # observability hook
        self._pending = dict.fromkeys(self._pending, 0)
        if self.kafka_commit:
            tps = [TopicPartition(self.topic, p, o) for p, o in positions.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=True)
            except KafkaException as exc:  # informational only
                self.log.warning("kafka_offset_commit_failed", error=str(exc))
        if self.spec.maintain_every_commits and self.commits % self.spec.maintain_every_commits == 0:
            self.maintain()
        if self.on_commit is not None:
            self.on_commit(data.num_rows)
        return True

    # ---- periodic work ------------------------------------------------------------------------

    def _merge_due(self) -> bool:
        return time.monotonic() - self._last_merge >= self.spec.merge_interval_s

    def merge(self) -> MergeReport | None:
        """Merge bronze into silver now; a failure is logged and retried at the next interval."""
        self._last_merge = time.monotonic()
        if self.merger is None:
            return None
        try:
            return self.merger.merge()
        except FatalRuntimeError:
            raise
        except Exception as exc:
            self.log.warning("silver_merge_failed", silver=self.spec.silver_table, error=repr(exc))
            return None

    def maintain(self) -> None:
        """Expire old snapshots and merge manifests (the commit-latency guard); failures only log."""
        table = self.writer.table
        if table is None:
            return
        started = time.perf_counter()
        try:
            report = maintain(
                table,
                older_than=timedelta(seconds=self.spec.maintain_older_than_s),
                retain_last=self.spec.maintain_retain_last,
                orphans_older_than=None,
            )
        except Exception as exc:
            self.log.warning("iceberg_maintenance_failed", error=repr(exc))
            return
        self.maintain_seconds.append(time.perf_counter() - started)
        self.log.debug(
            "iceberg_maintained", expired=len(report.snapshots_expired), manifests=report.manifests_after
        )

    def _observe_table(self) -> None:
        table = self.writer.table
        if table is None:
            return
        im.observe_table(self._ilabels, table)  # observability hook

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._rows = self._bytes = 0

    def _reset_to(self, offsets: dict[int, int]) -> None:
        """Fenced: drop the buffer and seek every assigned partition to what the table holds."""
        self._clear_buffer()
        self._positions.clear()
        self._fetched.clear()
        self._pending = dict.fromkeys(self._pending, 0)
        for p in sorted(self._assigned):
            self._expected[p] = offsets.get(p)
            target = offsets.get(p, OFFSET_BEGINNING)
            try:
                self.consumer.seek(TopicPartition(self.topic, p, target))
            except KafkaException as exc:
                raise FatalRuntimeError(f"cannot re-seek {self.topic}:{p} to {target}: {exc}") from exc
        self.log.warning("iceberg_writer_fenced_reseeked", offsets=offsets)

    # ---- rebalance callbacks (run inside consume()) ---------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def assign() -> None:
            m.REBALANCES.labels(**self._labels, kind="assign").inc()
            held = self.writer.offsets().offsets
            for tp in partitions:
                self._assigned.add(tp.partition)
                self._expected[tp.partition] = held.get(tp.partition)
                self._positions.pop(tp.partition, None)
                self._fetched.discard(tp.partition)
                tp.offset = held.get(tp.partition, OFFSET_BEGINNING)
                if self.until_caught_up:
                    _, high = consumer.get_watermark_offsets(
                        TopicPartition(self.topic, tp.partition), timeout=30
                    )
                    self._end_at_assign[tp.partition] = high
            consumer.assign(partitions)
            m.ASSIGNED_PARTITIONS.labels(**self._labels).set(len(self._assigned))
            self.health.set_ready(self.spec.name, True)  # observability hook: readiness
            self.log.info("partitions_assigned", offsets={tp.partition: tp.offset for tp in partitions})

        self._guard(assign)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def revoke() -> None:
            m.REBALANCES.labels(**self._labels, kind="revoke").inc()
            if self._fatal is None:
                self.commit()  # finish the open batch before the partitions move
            self._forget(partitions)

        self._guard(revoke)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def lost() -> None:
            m.REBALANCES.labels(**self._labels, kind="lost").inc()
            self._clear_buffer()  # another member may own them already: the next commit would be fenced
            self._positions.clear()
            self._forget(partitions)
            self.log.warning("partitions_lost", partitions=len(partitions))

        self._guard(lost)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.discard(tp.partition)
            self._expected.pop(tp.partition, None)
            self._positions.pop(tp.partition, None)
            self._fetched.discard(tp.partition)
            self._end_at_assign.pop(tp.partition, None)
        m.ASSIGNED_PARTITIONS.labels(**self._labels).set(len(self._assigned))
