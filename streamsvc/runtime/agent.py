"""An agent: one consumer, one producer and a commit protocol, running one compiled topology.

`StreamTask` says what one turn of work is -- `Processor.process` a consumed batch, produce its outputs,
write changed state to the changelogs, commit under the configured guarantee -- and `TaskManager` (see
`runtime.tasks`) decides when, and owns assignment, rewind and failure. Under exactly-once, outputs,
DLQ records, changelog records and consumed offsets go in one transaction (BRIEF §3.1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord
from streamsvc.eos.calls import GuardedCalls
from streamsvc.eos.delivery import DeliveryReports
from streamsvc.eos.errors import ErrorKind, classify, kafka_error
from streamsvc.eos.transactions import (
    AtLeastOnceCommitter,
    ClientTimeouts,
    Committer,
    TransactionalCommitter,
)
from streamsvc.errors import FatalRuntimeError
from streamsvc.faults import FaultHook, faults_from_env
from streamsvc.joins.copartition import check_copartitioned
from streamsvc.observability import metrics as m
from streamsvc.observability.graph import topology_graph
from streamsvc.observability.http import HealthState
from streamsvc.observability.logging import get_logger, kafka_logging
from streamsvc.observability.recorder import AgentMetrics
from streamsvc.registry.client import bind_registry
from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.global_tables import GlobalTableReader
from streamsvc.runtime.internal_topics import consumer_group, external_sources, plan_internal_topics
from streamsvc.runtime.outputs import TopicLimits, fetch_limits, producer_max_bytes
from streamsvc.runtime.processor import Processor
from streamsvc.runtime.repartition import REPARTITION_CONFIG
from streamsvc.runtime.startup import ensure_internal, source_partitions
from streamsvc.runtime.stores import TaskState
from streamsvc.runtime.task import TP, RetryBatch, Rewind, Task
from streamsvc.runtime.tasks import TaskManager
from streamsvc.runtime.timesync import TimeSync, copartition_groups
from streamsvc.state.changelog import CHANGELOG_CONFIG
from streamsvc.topology.model import Topology
from streamsvc.windows.watermark import WatermarkTracker

PENDING_OFFSETS_WAIT_S = 150.0  # > transaction.timeout.ms: an orphaned transaction times out meanwhile


class StreamTask(Task):
    """One topology's work under exactly-once (EOS v2) or at-least-once."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        transactional_id: str,
        log: Any,
        labels: dict[str, str],
        on_commit: Callable[[Tally], None] | None,
        faults: FaultHook,
    ) -> None:
        self.name = topology.name
        self.settings = settings
        self.processor = Processor(topology, settings)
        self.growing_sources = frozenset(self.processor.repartition_topics)
        groups = copartition_groups(self.processor.copartitioned)
        if groups and settings.max_task_idle_ms >= 0:
            self.time_sync = TimeSync(groups, settings.max_task_idle_ms, max(1_000, 2 * settings.batch_size))
        self.transactional_id = transactional_id
        self.log, self.labels, self.on_commit, self.faults = log, labels, on_commit, faults
        eos = settings.guarantee == "exactly_once"
        graph = topology_graph(topology, settings)
        self.obs = AgentMetrics(
            settings.app_id,
            self.name,
            log,
            graph,
            "stream",
            settings.guarantee,
            transactional_id if eos else "",
        )
        self.totals = Tally()  # committed outcome counts since start
        self._pending = Tally()
        self._outcome = Tally()
        self._txn_started = 0.0
        self._window_topics = {w.source_topic for w in self.processor.windows}
        self.watermarks = WatermarkTracker(0, settings.idle_timeout_ms or None, settings.wall_clock_fallback)
        self._last_idle_check = 0.0
        self.global_readers: list[GlobalTableReader] = []
        self.reports = DeliveryReports()
        self.state = TaskState(self.processor, settings, self.reports, log, labels, self.obs)
        self.calls = GuardedCalls(self.name)
        self.timeouts = ClientTimeouts(settings.client_timeout_ms / 1000, settings.client_deadline_ms / 1000)
        self.producer: Producer | None = None
        self.committer: Committer | None = None
        bind_registry(self.processor.serdes(), settings.registry_url)

    # ---- set-up -------------------------------------------------------------------------------

    def consumer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": consumer_group(self.processor, s),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed" if s.guarantee == "exactly_once" else "read_uncommitted",
            "auto.offset.reset": "earliest",
        }
        if s.effective_static_membership:
            conf["group.instance.id"] = f"{self.name}.{s.effective_instance_id}"
        conf.update(s.consumer)
        return conf

    def _producer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # same key -> partition mapping as the Java clients
            "on_delivery": self.reports.on_delivery,
            **kafka_logging(**self.labels, transactional_id=self.transactional_id),
        }
        if s.guarantee == "exactly_once":
            conf.update(
                {
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": 60000,
                    "message.timeout.ms": 60000,
                }
            )
        else:
            conf["enable.idempotence"] = True
        conf.update(s.producer)
        return conf

    def subscription(self) -> list[str]:
        return self.processor.source_topics

    def open(self, consumer: Consumer, admin: AdminClient) -> None:
        s = self.settings
        self._prepare_topics(admin)
        self.global_readers = [
            GlobalTableReader(t, s.bootstrap_servers, self.log, self.labels)
            for t in self.processor.global_tables.values()
        ]
        for reader in self.global_readers:
            reader.start()  # the whole replicated table before the first record is joined with it
        conf = self._producer_config()
        self.producer = Producer({**conf, "error_cb": self._on_producer_error})
        limits = fetch_limits(admin, self.processor.output_topics, conf)
        self.processor.set_limits(limits, TopicLimits(max_bytes=producer_max_bytes(conf) - 512))
        committer_type = TransactionalCommitter if s.guarantee == "exactly_once" else AtLeastOnceCommitter
        self.committer = committer_type(
            self.producer, consumer, self.reports, self.log, self.calls, self.timeouts, self.faults
        )
        self.committer.init()
        self.log.info("agent_started", sources=self.processor.source_topics, guarantee=s.guarantee)

    def _prepare_topics(self, admin: Any) -> None:
        """Sources must exist; co-partitioning is checked; sink, DLQ and changelog topics are created
        with their source's partition count (sinks: the largest)."""
        proc = self.processor
        external = external_sources(proc)
        counts = source_partitions(admin, external, self.settings.wait_for_sources_s, self.log)
        plan = plan_internal_topics(proc, counts)
        repartitions = {t.name: t.partitions for t in plan if t.kind == "repartition"}
        rep = self.settings.replication
        created = ensure_internal(admin, repartitions, REPARTITION_CONFIG, replication=rep)
        counts.update(repartitions)
        for stream_topic, table_topic in proc.copartitioned:
            check_copartitioned({t: counts[t] for t in (stream_topic, table_topic)})
        sinks = {s.topic for s in proc.sinks} - set(repartitions)
        outputs = dict.fromkeys(sinks, max(counts.values()))
        created += ensure_internal(admin, outputs, strict=False, replication=rep)
        dlqs = {s.dlq_topic: counts[t] for t, s in proc.sources.items()}
        created += ensure_internal(admin, dlqs, strict=False, replication=rep)
        changelogs = {t.name: t.partitions for t in plan if t.kind == "changelog"}
        created += ensure_internal(admin, changelogs, CHANGELOG_CONFIG, replication=rep)
        if created:
            self.log.info("topics_created", topics=created)

    def _on_producer_error(self, err: KafkaError) -> None:
        if classify(err) is ErrorKind.FATAL:
            self.log.error("kafka_producer_fatal", error=str(err))  # the next call raises it
        else:
            self.log.warning("kafka_client_error", error=str(err))

    def start_positions(self, consumer: Consumer, partitions: list[TP]) -> dict[TP, int]:
        """Committed offsets. While a dead instance's transaction still holds offsets of these partitions
        (KIP-447), the broker answers "unstable": wait until it commits or times out."""
        deadline = time.monotonic() + PENDING_OFFSETS_WAIT_S
        waited = False
        while True:
            try:
                got = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
                errors = [tp.error for tp in got if tp.error is not None]
                if not errors:
                    return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}
                err: KafkaError | None = errors[0]
            except KafkaException as exc:
                err = kafka_error(exc)
            if classify(err) is ErrorKind.FATAL or time.monotonic() > deadline:
                raise FatalRuntimeError(f"cannot read committed offsets of {partitions}: {err}")
            if not waited:
                self.log.warning("waiting_for_pending_transaction", error=str(err))
                waited = True

    # ---- state ----------------------------------------------------------------------------------

    def restore(self, partitions: set[TP], committed: Mapping[TP, int]) -> None:
        """Rebuild the state of `partitions` as of the committed offsets (see `runtime.stores`)."""
        self.state.restore(partitions, committed)
        windowed = [p for t, p in partitions if t in self._window_topics]
        if windowed:
            restored = {p: wm for p in windowed if (wm := self._partition_watermark(p)) is not None}
            self.watermarks.assign(windowed, restored)

    def drop(self, partitions: set[TP]) -> None:
        windowed = [p for t, p in partitions if t in self._window_topics]
        self.watermarks.revoke(windowed)
        self.obs.forget_partitions(windowed)
        self.state.drop(partitions)

    def _partition_watermark(self, partition: int) -> int | None:
        marks = [w.engine.watermark(partition) for w in self.processor.windows]
        known = [wm for wm in marks if wm is not None]
        return min(known) if known else None

    # ---- the work -------------------------------------------------------------------------------

    def before_poll(self) -> None:
        for reader in self.global_readers:
            reader.poll()

    def _begin(self) -> None:
        assert self.committer is not None
        if not self.committer.in_transaction:
            self.committer.begin()
            self._txn_started = time.monotonic()

    def process(self, records: list[Message]) -> None:
        self._begin()
        self.state.clean = False
        started = time.perf_counter()
        result = self.processor.process(records)
        self.faults("before_produce")
        self._produce_all(result.outputs)
        self.faults("after_produce")
        self._pending.add(result.tally)
        if self._window_topics:
            for partition in {msg.partition() or 0 for msg in records if msg.topic() in self._window_topics}:
                wm = self._partition_watermark(partition)
                if wm is not None:
                    self.watermarks.observe(partition, [wm])
        m.PROCESSING_DURATION.labels(**self.labels).observe(time.perf_counter() - started)
        m.BATCH_SIZE.labels(**self.labels).observe(len(records))

    def _produce_all(self, outputs: list[OutputRecord]) -> None:
        assert self.producer is not None
        produce, poll = self.producer.produce, self.producer.poll
        for rec in outputs:
            while True:
                try:
                    produce(rec.topic, rec.value, rec.key, headers=rec.headers, timestamp=rec.timestamp_ms)
                    break
                except BufferError:
                    poll(0.05)  # the local queue is full: serve delivery reports and try again
                except KafkaException as exc:
                    if classify(kafka_error(exc)) is ErrorKind.RECORD:  # refused by the client itself
                        self.processor.quarantine.blocked[(rec.topic, rec.key, rec.value)] = str(
                            kafka_error(exc)
                        )
                        raise RetryBatch(f"{rec.topic} refused a record: {kafka_error(exc)}") from exc
                    raise
        poll(0)

    def tick(self, now: float) -> None:
        """Export the agent watermark; with the wall-clock fallback, close idle partitions' windows."""
        if not self._window_topics:
            return
        agent_wm = self.watermarks.agent_watermark()
        if agent_wm is not None:
            m.WATERMARK_LAG.labels(**self.labels).set(max(0.0, time.time() - agent_wm / 1000))
        self.obs.watermarks(self.watermarks)
        if not self.settings.wall_clock_fallback or now - self._last_idle_check < 0.5:
            return
        self._last_idle_check = now
        wall_ms = int(time.time() * 1000)
        for partition in sorted(self.watermarks.partitions):
            if not self.watermarks.is_idle(partition):
                continue
            self.state.clean = False
            result = self.processor.advance_idle(partition, wall_ms)
            if result.outputs:
                self._begin()
                self._produce_all(result.outputs)
                self._pending.add(result.tally)

    @property
    def pending(self) -> bool:
        return self.committer is not None and self.committer.in_transaction

    def commit_due(self, now: float, idle: bool) -> bool:
        # On the interval, and at once when the input is idle (keeps latency low).
        return idle or now - self._txn_started >= self.settings.commit_interval_ms / 1000.0

    def commit(self, positions: dict[TP, int], committed: Mapping[TP, int]) -> Rewind | None:
        assert self.committer is not None
        self.faults("before_flush_state")
        assert self.producer is not None
        self.state.flush(self.producer, positions, committed)
        self.faults("after_flush_state")
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        result = self.committer.commit(offsets)
        if not result.committed:
            self._pending.clear()
            self.state.aborted()
            found = self.processor.quarantine.block(result.rejected)
            return Rewind("the broker refused records" if found else "commit failed", progress=found > 0)
        self.processor.quarantine.release({**committed, **positions})
        self.state.committed()
        self._outcome, self._pending = self._pending, Tally()
        self.totals.add(self._outcome)
        if self.on_commit is not None:
            self.on_commit(self._outcome)
        return None

    def outcome(self) -> Tally:
        return self._outcome

    def abort(self) -> None:
        self._pending.clear()
        self.state.aborted()
        if self.committer is not None:
            self.committer.abort()

    def close(self) -> None:
        for reader in self.global_readers:
            try:
                reader.close()
            except (KafkaException, RuntimeError) as exc:
                self.log.warning("global_table_close_failed", error=str(exc))
        if self.producer is not None and self.calls.stuck is None:
            try:  # a fenced producer raises here: it must not replace the error that ended the agent
                self.producer.flush(5)
            except KafkaException as exc:
                self.log.warning("producer_flush_on_close_failed", error=str(exc))
        self.calls.close()
        self.state.close()


class Agent:
    """Runs one topology until `stop` is set, the input is exhausted (`until_caught_up`), or a failure."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        health: HealthState | None = None,
        until_caught_up: bool = False,
        on_commit: Callable[[Tally], None] | None = None,
        transactional_id: str | None = None,
        faults: FaultHook | None = None,
    ) -> None:
        self.name = topology.name
        self.settings = settings
        self.transactional_id = (
            transactional_id
            or settings.transactional_id
            or (f"{settings.app_id}.{self.name}.{settings.effective_instance_id}")
        )
        self.log = get_logger(app=settings.app_id, agent=self.name, transactional_id=self.transactional_id)
        labels = {"app": settings.app_id, "agent": self.name}
        faults = faults if faults is not None else faults_from_env()
        self.task = StreamTask(topology, settings, self.transactional_id, self.log, labels, on_commit, faults)
        self.manager = TaskManager.for_settings(
            self.task, settings, self.log, labels, self.task.obs, health, until_caught_up, faults
        )

    @property
    def processor(self) -> Processor:
        return self.task.processor

    @property
    def totals(self) -> Tally:
        return self.task.totals

    @property
    def first_record_at(self) -> float | None:
        return self.manager.first_record_at

    def run(self, stop: threading.Event) -> None:
        """Consume, process and commit until stopped; commits the open transaction before returning."""
        self.manager.run(stop)
        if self.manager.until_caught_up and not stop.is_set():
            self._log_caught_up()
        self.log.info("agent_stopping", committed=dict(self.totals.consumed))

    def _log_caught_up(self) -> None:
        active = time.monotonic() - self.first_record_at if self.first_record_at else 0.0
        self.log.info(
            "caught_up",
            consumed=sum(self.totals.consumed.values()),
            active_s=round(active, 3),
            peak_rss_mb=round(m.peak_rss_mb(), 1),
            positions={f"{t}:{p}": o for (t, p), o in sorted(self.manager.committed.items())},
        )
