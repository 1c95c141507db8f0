"""`IcebergSinkAgent`: one Kafka topic -> one Iceberg table, exactly once (BRIEF §3.7).

`IcebergTask` is the work and `runtime.tasks.TaskManager` the lifecycle, as for stream agents. The
consumer group only assigns partitions: positions live in the table. On assignment the task reads the
offsets the table holds and the manager seeks there; records are decoded and buffered as Arrow (a
record that cannot be decoded or typed goes to the DLQ, the rest of its batch is kept); on the interval
(or size threshold) the batch is appended with the new offsets by a fenced `TableWriter` commit, with
its dead letters in a Kafka transaction that commits after it (`dead_letters`). A fenced writer (a
zombie, or a peer that took over its partitions) drops its buffer and rewinds to what the table holds.
Offsets reach Kafka too, after the Iceberg commit, for lag monitoring only; they are never read back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pyiceberg.catalog import Catalog

from streamsvc.config import Settings
from streamsvc.dlq.records import Stage
from streamsvc.eos.calls import GuardedCalls
from streamsvc.eos.delivery import DeliveryReports
from streamsvc.eos.transactions import ClientTimeouts, ResumableCalls
from streamsvc.errors import DecodeError, FatalRuntimeError
from streamsvc.faults import FaultHook, faults_from_env
from streamsvc.observability.graph import sink_graph
from streamsvc.observability.http import HealthState
from streamsvc.observability.logging import get_logger, kafka_logging
from streamsvc.observability.recorder import AgentMetrics, SinkOutcome
from streamsvc.registry.client import bind_registry
from streamsvc.runtime.outputs import RECORD_OVERHEAD, fetch_limits, producer_max_bytes
from streamsvc.runtime.startup import ensure_internal, source_partitions
from streamsvc.runtime.task import TP, Rewind, Task
from streamsvc.runtime.tasks import TaskManager
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.debezium import ChangeRecord
from streamsvc.sinks.iceberg import metrics as im
from streamsvc.sinks.iceberg.dead_letters import SinkDeadLetters
from streamsvc.sinks.iceberg.maintenance import maintain_in_agent
from streamsvc.sinks.iceberg.merge import MergeReport, SilverMerger
from streamsvc.sinks.iceberg.rows import BatchBuilder, Meta, cdc_row, concat, meta_schema
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.sinks.iceberg.writer import TableWriter

MAX_DEAD_LETTERS_PER_COMMIT = 200  # each is recorded in a table property (see `dead_letters`)


class IcebergTask(Task):
    """One `IcebergSinkSpec`'s work: decode and buffer, commit fenced on the table's offsets."""

    default_start = OFFSET_BEGINNING

    def __init__(
        self,
        spec: IcebergSinkSpec,
        settings: Settings,
        catalog: Catalog,
        log: Any,
        labels: dict[str, str],
        faults: FaultHook,
        kafka_commit: bool,
        on_commit: Callable[[int], None] | None,
    ) -> None:
        self.name = spec.name
        self.spec, self.settings, self.log, self.labels = spec, settings, log, labels
        self.faults, self.kafka_commit, self.on_commit = faults, kafka_commit, on_commit
        self.topic = settings.topic(spec.source)
        self.dlq_topic = f"{self.topic}{settings.dlq_suffix}"
        self.group = f"{settings.effective_group_id}.{spec.name}"
        self.instance = settings.effective_instance_id
        self.writer = TableWriter(
            catalog,
            spec.table,
            self.group,
            self.topic,
            writer_id=f"{settings.app_id}.{spec.name}.{self.instance}",
            partition_by=spec.partition_fields,
            properties=dict(spec.table_properties),
            faults=faults,
            log=log,
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
                log=log,
            )
            if spec.silver_table
            else None
        )
        self.builder = BatchBuilder(fixed=spec.schema, cdc=spec.cdc)
        bind_registry([spec.value_serde], settings.registry_url)
        self._ilabels = {**labels, "table": spec.table}
        graph = sink_graph(self.topic, self.dlq_topic, spec.table, spec.silver_table, spec.name)
        self.obs = AgentMetrics(settings.app_id, spec.name, log, graph, "iceberg", "exactly_once")
        self.lag_total = im.OFFSET_LAG.labels(**self._ilabels).set
        self._buffer: list[pa.Table] = []
        self._rows = self._bytes = 0
        self._last_commit = self._last_merge = time.monotonic()
        self.commit_seconds: deque[float] = deque(maxlen=100_000)  # duration of each committed commit
        self.maintain_seconds: deque[float] = deque(maxlen=10_000)
        self.committed_rows = 0
        self.commits = 0
        self._kafka_offsets: dict[int, int] = {}
        self.reports = DeliveryReports(track_offsets=True)
        self.calls = GuardedCalls(spec.name)
        timeouts = ClientTimeouts(settings.client_timeout_ms / 1000, settings.client_deadline_ms / 1000)
        self.resumable = ResumableCalls(self.calls, timeouts, log)
        self.producer: Producer | None = None
        self.dead: SinkDeadLetters
        self.manager: TaskManager

    # ---- set-up -------------------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range,roundrobin",
            **kafka_logging(**self.labels, table=self.spec.table),
        }
        if s.effective_static_membership:
            conf["group.instance.id"] = f"{self.spec.name}.{self.instance}"
        conf.update(s.consumer)
        return conf

    def subscription(self) -> list[str]:
        return [self.topic]

    def open(self, consumer: Consumer, admin: AdminClient) -> None:
        s = self.settings
        parts = source_partitions(admin, [self.topic], s.wait_for_sources_s, self.log)[self.topic]
        ensure_internal(admin, {self.dlq_topic: parts}, strict=False, replication=s.replication)
        dlq_parts = len(admin.list_topics(self.dlq_topic, timeout=30).topics[self.dlq_topic].partitions)
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "transactional.id": f"{s.app_id}.sink.{self.spec.name}.{self.instance}",  # apart from agents'
            "transaction.timeout.ms": 60000,
            "linger.ms": 5,
            "on_delivery": self.reports.on_delivery,
            **kafka_logging(**self.labels, table=self.spec.table),
            **{k: v for k, v in s.producer.items() if k != "transactional.id"},
        }
        producer = self.producer = Producer(conf)
        limits = fetch_limits(admin, [self.dlq_topic], conf).get(self.dlq_topic)
        max_bytes = limits.max_bytes if limits else producer_max_bytes(conf) - RECORD_OVERHEAD
        # Fences an older instance with the same id and aborts its open dead-letter transaction.
        self.resumable.resumable(
            lambda t: producer.init_transactions(t), "init_transactions", self.resumable.deadline()
        )
        self.dead = SinkDeadLetters(
            producer,
            self.reports,
            self.resumable,
            s.bootstrap_servers,
            self.dlq_topic,
            dlq_parts,
            self.topic,
            s.app_id,
            self.group,
            max_bytes,
            self.log,
            self.faults,
        )
        table = self.writer.load()
        if table is not None:
            self.builder.learn(table.schema().as_arrow())
        self.log.info("iceberg_sink_started", group=self.group, interval_s=self.spec.commit_interval_s)

    def start_positions(self, consumer: Consumer, partitions: list[TP]) -> dict[TP, int]:
        held = self.writer.offsets().offsets
        return {(t, p): held[p] for t, p in partitions if t == self.topic and p in held}

    def restore(self, partitions: set[TP], committed: Mapping[TP, int]) -> None:
        """Nothing is kept between commits but the table; dead letters a crashed commit left out of
        the DLQ are written now (see `dead_letters`)."""
        table = self.writer.load()
        if table is not None:
            self.builder.learn(table.schema().as_arrow())
        offsets = {p: o for (t, p), o in committed.items() if t == self.topic}
        self.dead.repair(table, offsets, sorted(p for t, p in partitions if t == self.topic))

    # ---- the work -------------------------------------------------------------------------------

    def process(self, records: list[Message]) -> None:
        rows: list[dict[str, Any]] = []
        metas: list[Meta] = []
        extras: list[dict[str, Any]] = []
        sources: list[Message] = []
        serde, ctx = self.spec.value_serde, SerdeContext(self.topic)
        emitted = 0
        for msg in records:
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
                Meta(
                    msg.topic() or self.topic,
                    msg.partition() or 0,
                    msg.offset() or 0,
                    ts if ts_type else None,
                    key if isinstance(key, bytes) else None,
                )
            )
            sources.append(msg)
        if rows:
            batch, failures = self.builder.build(rows, metas, extras if self.spec.cdc else None)
            for i, error in failures:
                self._dead_letter(sources[i], "process", error)
            if batch is not None and batch.num_rows:
                self._buffer.append(batch)
                self._rows += batch.num_rows
                self._bytes += batch.nbytes
                emitted = batch.num_rows
        self.obs.count(self.topic, len(records), emitted)

    def _dead_letter(self, msg: Message, stage: Stage, exc: BaseException | str) -> None:
        self.dead.add(msg, stage, exc)
        self.obs.dead_lettered(self.topic, stage, exc)

    @property
    def pending(self) -> bool:
        return bool(self._buffer or self.dead.pending or self.manager.positions)

    def commit_due(self, now: float, idle: bool) -> bool:
        if self._rows >= self.spec.max_rows or self._bytes >= self.spec.max_bytes:
            return True
        if len(self.dead.pending) >= MAX_DEAD_LETTERS_PER_COMMIT:
            return True
        return now - self._last_commit >= self.spec.commit_interval_s

    def tick(self, now: float) -> None:
        """Advance offsets past transaction markers on quiet partitions (an offset-only commit), merge
        bronze into silver on its interval, and copy committed offsets to Kafka (for lag tools only)."""
        if self._kafka_offsets:
            owned = {p: o for p, o in self._kafka_offsets.items() if (self.topic, p) in self.manager.assigned}
            self._kafka_offsets.clear()
            try:
                tps = [TopicPartition(self.topic, p, o) for p, o in owned.items()]
                if tps:
                    self.manager.consumer.commit(offsets=tps, asynchronous=True)
            except KafkaException as exc:  # informational only
                self.log.warning("kafka_offset_commit_failed", error=str(exc))
        if now - self._last_commit >= self.spec.commit_interval_s and not self.pending:
            manager = self.manager
            ahead = {
                tp: pos
                for tp, pos in manager.consumer_positions().items()
                if pos > manager.committed.get(tp, 0)
            }
            if ahead:
                manager.positions.update(ahead)
        if self.merger is not None and now - self._last_merge >= self.spec.merge_interval_s:
            self.merge()

    def commit(self, positions: dict[TP, int], committed: Mapping[TP, int]) -> Rewind | None:
        self._last_commit = time.monotonic()
        parts = {p: o for (t, p), o in positions.items() if t == self.topic and o != committed.get((t, p))}
        if not parts and not self._buffer:
            self.dead.discard()
            return None
        data = concat(self._buffer) if self._buffer else meta_schema(self.spec.cdc).empty_table()
        self.dead.stage()
        started = time.perf_counter()
        outcome = self.writer.commit(
            data,
            parts,
            {p: committed.get((self.topic, p)) for p in parts},
            extra_properties=lambda table: self.dead.properties(table, parts),
        )
        im.COMMIT_DURATION.labels(**self._ilabels).observe(time.perf_counter() - started)
        if not outcome.committed:
            im.COMMITS.labels(**self._ilabels, outcome="fenced").inc()
            self.abort()
            self.log.warning("iceberg_writer_fenced_rewinding", offsets=outcome.offsets)
            return Rewind(
                "fenced by another writer of the table",
                {(self.topic, p): o for p, o in outcome.offsets.items()},
            )
        self.faults("after_catalog_commit")
        letters = len(self.dead.pending)
        self.dead.commit()
        self._committed(data, parts, time.perf_counter() - started)
        self.log.info(
            "iceberg_committed",
            rows=data.num_rows,
            dead_letters=letters,
            offsets=parts,
            seconds=round(time.perf_counter() - started, 3),
        )
        return None

    def _committed(self, data: pa.Table, parts: dict[int, int], seconds: float) -> None:
        self.commit_seconds.append(seconds)
        im.COMMITS.labels(**self._ilabels, outcome="committed").inc()
        im.ROWS_WRITTEN.labels(**self._ilabels).inc(data.num_rows)
        self._observe_table()
        self._clear_buffer()
        self.commits += 1
        self.committed_rows += data.num_rows
        if self.kafka_commit:  # on the next loop turn: this may run inside a rebalance callback
            self._kafka_offsets.update(parts)
        if self.spec.maintain_every_commits and self.commits % self.spec.maintain_every_commits == 0:
            self.maintain()
        if self.on_commit is not None:
            self.on_commit(data.num_rows)

    def outcome(self) -> SinkOutcome:
        return self.obs.pending

    def abort(self) -> None:
        self._clear_buffer()
        if self.producer is not None:
            self.dead.abort()

    def finish(self) -> None:
        if self.merger is not None:
            self.merge()
        self.log.info(
            "caught_up",
            offsets={f"{t}:{p}": o for (t, p), o in sorted(self.manager.committed.items())},
            rows=self.committed_rows,
        )

    def close(self) -> None:
        if self.producer is not None and self.calls.stuck is None:
            try:
                self.producer.flush(5)
            except KafkaException as exc:
                self.log.warning("producer_flush_on_close_failed", error=str(exc))
        self.calls.close()

    # ---- periodic work ------------------------------------------------------------------------

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
            report = maintain_in_agent(table, self.spec)
        except Exception as exc:
            self.log.warning("iceberg_maintenance_failed", error=repr(exc))
            return
        self.maintain_seconds.append(time.perf_counter() - started)
        self.log.debug(
            "iceberg_maintained", expired=len(report.snapshots_expired), manifests=report.manifests_after
        )

    def _observe_table(self) -> None:
        if self.writer.table is not None:
            im.observe_table(self._ilabels, self.writer.table)

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._rows = self._bytes = 0


class IcebergSinkAgent:
    """Runs one `IcebergSinkSpec` until `stop` is set, the input is caught up, or a failure."""

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
        self.name = spec.name
        self.spec = spec
        self.log = get_logger(
            app=settings.app_id, agent=spec.name, table=spec.table, topic=settings.topic(spec.source)
        )
        labels = {"app": settings.app_id, "agent": spec.name}
        faults = faults if faults is not None else faults_from_env()
        self.task = IcebergTask(spec, settings, catalog, self.log, labels, faults, kafka_commit, on_commit)
        self.manager = TaskManager.for_settings(
            self.task, settings, self.log, labels, self.task.obs, health, until_caught_up, faults
        )
        self.task.manager = self.manager

    @property
    def writer(self) -> TableWriter:
        return self.task.writer

    @property
    def committed_rows(self) -> int:
        return self.task.committed_rows

    @property
    def commits(self) -> int:
        return self.task.commits

    @property
    def commit_seconds(self) -> deque[float]:
        return self.task.commit_seconds

    @property
    def maintain_seconds(self) -> deque[float]:
        return self.task.maintain_seconds

    def commit(self) -> bool:
        return self.manager.commit()

    def merge(self) -> MergeReport | None:
        return self.task.merge()

    def run(self, stop: threading.Event) -> None:
        """Consume and commit until stopped; finishes the open commit before returning."""
        self.manager.run(stop)
        self.log.info("iceberg_sink_stopping", rows=self.task.committed_rows, commits=self.task.commits)
