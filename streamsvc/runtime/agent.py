"""An agent: one consumer, one producer and a commit protocol, running one compiled topology.

The loop is micro-batched: `consume(num_messages=batch_size)` -> `Processor.process` -> produce ->
commit every `commit_interval_ms`. Under exactly-once, outputs, DLQ records and consumed offsets go in
one transaction (BRIEF §3.1); a failed transaction is aborted and the consumer rewound to the last
committed positions, so the batch is processed again from the same input.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord
from streamsvc.eos.transactions import (
    AtLeastOnceCommitter,
    Committer,
    TransactionalCommitter,
    is_fatal,
    kafka_error,
)
from streamsvc.errors import FatalRuntimeError
from streamsvc.joins.copartition import check_copartitioned
from streamsvc.observability import metrics as m
from streamsvc.observability.graph import topology_graph
from streamsvc.observability.http import HealthState
from streamsvc.observability.lag import ConsumerLag
from streamsvc.observability.logging import get_logger, kafka_logging
from streamsvc.observability.recorder import AgentMetrics
from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.fatal import FatalLatch
from streamsvc.runtime.global_tables import GlobalTableReader
from streamsvc.runtime.processor import Processor
from streamsvc.runtime.topics import admin_client, ensure_topics, partition_counts
from streamsvc.state.changelog import CHANGELOG_CONFIG, read_changelog, write_changes
from streamsvc.topology.model import Topology
from streamsvc.windows.watermark import WatermarkTracker

TP = tuple[str, int]


class Agent(FatalLatch):
    """Runs `topology` until `stop` is set, the input is exhausted (`until_caught_up`), or a fatal error."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        health: HealthState | None = None,
        until_caught_up: bool = False,
        on_commit: Callable[[Tally], None] | None = None,
    ) -> None:
        self.settings = settings
        self.name = topology.name
        self.processor = Processor(topology, settings)
        self.health = health or HealthState()
        self.until_caught_up = until_caught_up
        self.on_commit = on_commit
        self.transactional_id = settings.transactional_id or (
            f"{settings.app_id}.{self.name}.{settings.effective_instance_id}"
        )
        self.log = get_logger(app=settings.app_id, agent=self.name, transactional_id=self.transactional_id)
        self.totals = Tally()  # committed outcome counts since start
        self._labels = {"app": settings.app_id, "agent": self.name}
        self._pending = Tally()
        self._positions: dict[TP, int] = {}  # next offsets processed in the open transaction
        # The next offset each assigned partition may deliver. A rebalance inside consume() can hand
        # back messages fetched before it *and* the same offsets fetched again after it: without this
        # guard both copies would be processed.
        self._next_offset: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}  # next offsets as of the last successful commit
        self._end_at_assign: dict[TP, int] = {}
        self._assigned: set[TP] = set()
        s, eos = settings, settings.guarantee == "exactly_once"  # observability hooks: metrics, status, lag
        graph, tid = topology_graph(topology, settings), self.transactional_id if eos else ""
        self.obs = AgentMetrics(s.app_id, self.name, self.log, graph, "stream", s.guarantee, tid)
        self.lag = ConsumerLag(self._labels, lambda: {p: self._committed.get(p) for p in self._assigned}, eos)
        self._fatal = None
        self._txn_started = 0.0
        self.global_readers: list[GlobalTableReader] = []
        self._window_topics = {w.source_topic for w in self.processor.windows}
        self.watermarks = WatermarkTracker(0, settings.idle_timeout_ms or None, settings.wall_clock_fallback)
        self._last_idle_check = 0.0
        self.first_record_at: float | None = None  # monotonic; for throughput reporting
        self._bind_registry()

    # ---- set-up -------------------------------------------------------------------------------

    def _bind_registry(self) -> None:
        if not self.settings.registry_url:
            return
        from streamsvc.registry.client import registry_client

        client = registry_client(self.settings.registry_url)
        for serde in self.processor.serdes():
            layer: Any = serde
            while layer is not None:  # wrappers such as DebeziumSerde expose the wrapped serde as `inner`
                bind = getattr(layer, "bind_registry", None)
                if bind is not None:
                    bind(client)
                layer = getattr(layer, "inner", None)

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": s.effective_group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed" if s.guarantee == "exactly_once" else "read_uncommitted",
            "auto.offset.reset": "earliest",
            "error_cb": self._on_client_error,
            **self.lag.client_config(),  # observability hook: consumer lag from statistics
            **kafka_logging(app=s.app_id, agent=self.name),  # observability hook: librdkafka logs
        }
        if s.static_membership:
            conf["group.instance.id"] = f"{self.name}.{s.effective_instance_id}"
        conf.update(s.consumer)
        return conf

    def _producer_config(self) -> dict[str, Any]:
        s = self.settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers,
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # same key -> partition mapping as the Java clients
            "error_cb": self._on_client_error,
            **kafka_logging(app=s.app_id, agent=self.name, transactional_id=self.transactional_id),
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
            conf.update({"enable.idempotence": True, "delivery.report.only.error": True})
        conf.update(s.producer)
        return conf

    def _ensure_output_topics(self) -> None:
        """Check co-partitioning of joined topics; create missing sink, DLQ and changelog topics with
        the sources' partition count."""
        admin = admin_client(self.settings.bootstrap_servers)
        counts = partition_counts(admin, self.processor.source_topics)
        for stream_topic, table_topic in self.processor.copartitioned:
            if stream_topic in counts and table_topic in counts:
                check_copartitioned({t: counts[t] for t in (stream_topic, table_topic)})
        partitions = max(counts.values(), default=1)
        created = ensure_topics(admin, dict.fromkeys(self.processor.output_topics, partitions))
        changelogs = {store.changelog_topic: partitions for store in self.processor.stores}
        created += ensure_topics(admin, changelogs, CHANGELOG_CONFIG)
        if created:
            self.log.info("topics_created", topics=created, partitions=partitions)

    # ---- main loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, process and commit until stopped; commits the open transaction before returning."""
        s = self.settings
        self._ensure_output_topics()
        self.global_readers = [
            GlobalTableReader(t, s.bootstrap_servers, self.log, self._labels)
            for t in self.processor.global_tables.values()
        ]
        for reader in self.global_readers:
            reader.start()  # the whole replicated table before the first record is joined with it
        self.consumer = Consumer(self._consumer_config())
        self.committer: Committer
        if s.guarantee == "exactly_once":
            self.producer = Producer(self._producer_config())
            txn = TransactionalCommitter(self.producer, self.consumer, self.log)
            txn.init()
            self.committer = txn
        else:
            # Delivery failures must reach the committer, which needs the producer: bind late.
            committer: list[AtLeastOnceCommitter] = []
            on_delivery = lambda err, msg: committer[0].on_delivery(err, msg)  # noqa: E731
            self.producer = Producer({**self._producer_config(), "on_delivery": on_delivery})
            committer.append(AtLeastOnceCommitter(self.producer, self.consumer, self.log))
            self.committer = committer[0]
        self.health.set_ready(self.name, False)
        self.consumer.subscribe(
            self.processor.source_topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.log.info("agent_started", sources=self.processor.source_topics, guarantee=s.guarantee)
        self.health.polled(self.name)
        interval = s.commit_interval_ms / 1000.0
        poll_timeout = s.poll_timeout_ms / 1000.0
        try:
            while not stop.is_set():
                for reader in self.global_readers:
                    reader.poll()
                msgs = self.consumer.consume(num_messages=s.batch_size, timeout=poll_timeout)
                self._raise_if_fatal()
                now = time.monotonic()
                self.health.polled(self.name)
                m.LAST_POLL.labels(**self._labels).set(time.time())
                if msgs:
                    self._handle(msgs)
                if self._window_topics:
                    self._track_watermarks(now)
                # Commit on the interval, and at once when the input is idle (keeps latency low).
                if self.committer.in_transaction and (not msgs or now - self._txn_started >= interval):
                    self._commit()
                if self.until_caught_up and not self.committer.in_transaction and self._caught_up():
                    self._log_caught_up()
                    break
            self._commit()
            self.log.info("agent_stopping", committed=dict(self.totals.consumed))
        except FatalRuntimeError:
            self.log.error("agent_fatal", exc_info=True)
            raise
        finally:
            self._close()

    def _log_caught_up(self) -> None:
        active = time.monotonic() - self.first_record_at if self.first_record_at else 0.0
        self.log.info(
            "caught_up",
            consumed=sum(self.totals.consumed.values()),
            active_s=round(active, 3),
            peak_rss_mb=round(m.peak_rss_mb(), 1),
            positions={f"{t}:{p}": o for (t, p), o in sorted(self._committed.items())},
        )

    def _close(self) -> None:
        for reader in self.global_readers:
            reader.close()
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            self.log.warning("consumer_close_failed", error=str(exc))
        self.producer.flush(5)
        self.health.set_ready(self.name, False)

    def _handle(self, msgs: list[Message]) -> None:
        good: list[Message] = []
        for msg in msgs:
            if not self._is_record(msg):
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp not in self._assigned:  # a stale fetch of a partition revoked meanwhile
                continue
            offset = msg.offset() or 0
            if offset < self._next_offset.get(tp, offset):  # already processed (see _next_offset)
                continue
            self._next_offset[tp] = offset + 1
            good.append(msg)
        if not good:
            return
        if self.first_record_at is None:
            self.first_record_at = time.monotonic()
        self.obs.batch(good)  # observability hook: end-to-end latency samples
        if not self.committer.in_transaction:
            self.committer.begin()
            self._txn_started = time.monotonic()
        started = time.perf_counter()
        result = self.processor.process(good)
        self._produce_all(result.outputs)
        self.producer.poll(0)
        positions = self._positions
        for msg in good:  # in offset order per partition, so the last one wins
            positions[(msg.topic(), msg.partition())] = msg.offset() + 1  # type: ignore[index,operator]
        self._pending.add(result.tally)
        if self._window_topics:
            for partition in {msg.partition() or 0 for msg in good if msg.topic() in self._window_topics}:
                wm = self._partition_watermark(partition)
                if wm is not None:
                    self.watermarks.observe(partition, [wm])
        m.PROCESSING_DURATION.labels(**self._labels).observe(time.perf_counter() - started)
        m.BATCH_SIZE.labels(**self._labels).observe(len(good))

    def _produce_all(self, outputs: list[OutputRecord]) -> None:
        produce = self.producer.produce
        for rec in outputs:
            try:
                produce(rec.topic, rec.value, rec.key, headers=rec.headers, timestamp=rec.timestamp_ms)
            except BufferError:
                self._produce_when_queue_frees(rec)
            except KafkaException as exc:
                if is_fatal(kafka_error(exc)):
                    raise FatalRuntimeError(f"produce failed fatally: {exc}") from exc
                raise

    def _produce_when_queue_frees(self, rec: OutputRecord) -> None:
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(
                    rec.topic, rec.value, rec.key, headers=rec.headers, timestamp=rec.timestamp_ms
                )
                return
            except BufferError:
                continue

    def _partition_watermark(self, partition: int) -> int | None:
        marks = [w.engine.watermark(partition) for w in self.processor.windows]
        known = [wm for wm in marks if wm is not None]
        return min(known) if known else None

    def _track_watermarks(self, now: float) -> None:
        """Export the agent watermark; with the wall-clock fallback, close idle partitions' windows."""
        agent_wm = self.watermarks.agent_watermark()
        if agent_wm is not None:
            m.WATERMARK_LAG.labels(**self._labels).set(max(0.0, time.time() - agent_wm / 1000))
        self.obs.watermarks(self.watermarks)  # observability hook: watermark per partition
        if not self.settings.wall_clock_fallback or now - self._last_idle_check < 0.5:
            return
        self._last_idle_check = now
        wall_ms = int(time.time() * 1000)
        for partition in sorted(self.watermarks.partitions):
            if not self.watermarks.is_idle(partition):
                continue
            result = self.processor.advance_idle(partition, wall_ms)
            if result.outputs:
                if not self.committer.in_transaction:
                    self.committer.begin()
                    self._txn_started = time.monotonic()
                self._produce_all(result.outputs)
                self._pending.add(result.tally)

    def _flush_state(self) -> None:
        """Write the window state changed since the last commit to the changelogs, inside the open
        transaction. Doing it once per commit, not per batch, writes each changed entry once."""
        for window in self.processor.stores:
            for partition in sorted(window.engine.partitions):
                changes = window.engine.changes(partition)
                if not changes:
                    continue
                key = (window.source_topic, partition)
                source_offset = self._positions.get(key, self._committed.get(key, 0))
                write_changes(self.producer, window.changelog_topic, partition, changes, source_offset)

    def _commit(self, rewind: bool = True) -> None:
        if not self.committer.in_transaction:
            return
        self._flush_state()
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        started = time.perf_counter()
        if self.committer.commit(offsets):
            self.obs.committed(self._pending, time.perf_counter() - started, offsets)  # observability hook
            self._committed.update(self._positions)
            self._record(self._pending)
            self._positions.clear()
            self._pending.clear()
            return
        self.obs.aborted()  # observability hook
        self._positions.clear()
        self._pending.clear()
        if rewind:
            self._rewind()

    def _record(self, tally: Tally) -> None:
        self.totals.add(tally)
        if self.on_commit is not None:
            self.on_commit(tally)

    def _restore_state(self, partitions: set[TP]) -> None:
        """Rebuild window state of `partitions` from their changelogs, up to the committed offsets."""
        for window in self.processor.stores:
            for topic, partition in sorted(partitions):
                if topic != window.source_topic:
                    continue
                up_to = self._committed.get((topic, partition), 0)
                entries = read_changelog(
                    self.settings.bootstrap_servers, window.changelog_topic, partition, up_to,
                    progress=self.obs.restore_progress(window.name, partition),  # observability hook
                )
                window.engine.restore(partition, entries)
                m.STATE_RESTORED.labels(**self._labels, store=window.name).inc(len(entries))
                self.log.info(
                    "state_restored",
                    store=window.name,
                    partition=partition,
                    entries=len(entries),
                    up_to=up_to,
                )

    def _rewind(self) -> None:
        """Seek every assigned partition back to its last committed position, state included."""
        self._restore_state(self._assigned)
        for topic, partition in sorted(self._assigned):
            offset = self._committed.get((topic, partition), OFFSET_BEGINNING)
            self._next_offset.pop((topic, partition), None)
            if offset >= 0:
                self._next_offset[(topic, partition)] = offset
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Going on from the current position would skip the aborted records: restart instead.
                raise FatalRuntimeError(f"cannot rewind {topic}:{partition} to {offset}: {exc}") from exc
        self.log.info("rewound", partitions=len(self._assigned))

    def _caught_up(self) -> bool:
        if not self._assigned:
            return False
        positions = self.consumer.position([TopicPartition(t, p) for t, p in self._assigned])
        # A partition with nothing left to fetch has no position yet: its committed offset stands in.
        return all(
            max(tp.offset, self._committed.get((tp.topic, tp.partition), 0))
            >= self._end_at_assign[(tp.topic, tp.partition)]
            for tp in positions
        )

    # ---- rebalance callbacks (run inside consume()) ---------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def assign() -> None:
            m.REBALANCES.labels(**self._labels, kind="assign").inc()
            tps = {(tp.topic, tp.partition) for tp in partitions}
            self._assigned |= tps
            for tp in consumer.committed(partitions, timeout=30):
                key = (tp.topic, tp.partition)
                self._next_offset.pop(key, None)
                if tp.offset >= 0:
                    self._committed[key] = tp.offset
                    self._next_offset[key] = tp.offset
                else:
                    self._committed.pop(key, None)
            if self.until_caught_up:
                for topic, partition in tps:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                    self._end_at_assign[(topic, partition)] = high
            self._restore_state(tps)  # before any record of these partitions is processed
            windowed = [p for t, p in tps if t in self._window_topics]
            if windowed:
                restored = {p: wm for p in windowed if (wm := self._partition_watermark(p)) is not None}
                self.watermarks.assign(windowed, restored)
            m.ASSIGNED_PARTITIONS.labels(**self._labels).set(len(self._assigned))
            self.health.set_ready(self.name, True)
            self.log.info("partitions_assigned", partitions=sorted(f"{t}:{p}" for t, p in tps))

        self._guard(assign)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def revoke() -> None:
            m.REBALANCES.labels(**self._labels, kind="revoke").inc()
            self._commit(rewind=False)  # finish the open transaction before the rebalance completes
            self._forget(partitions)
            self.log.info("partitions_revoked", partitions=len(partitions))

        self._guard(revoke)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def lost() -> None:
            m.REBALANCES.labels(**self._labels, kind="lost").inc()
            if self.committer.in_transaction:
                self.committer.abort()
                self.obs.aborted()  # observability hook
                self._positions.clear()
                self._pending.clear()
            self._forget(partitions)
            self.log.warning("partitions_lost", partitions=len(partitions))

        self._guard(lost)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self.watermarks.revoke([tp.partition for tp in partitions if tp.topic in self._window_topics])
        self.obs.forget_partitions(tp.partition for tp in partitions if tp.topic in self._window_topics)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.discard(key)
            self._committed.pop(key, None)
            self._positions.pop(key, None)
            self._next_offset.pop(key, None)
            self._end_at_assign.pop(key, None)
            for window in self.processor.stores:
                if window.source_topic == tp.topic:
                    window.engine.drop(tp.partition)
        m.ASSIGNED_PARTITIONS.labels(**self._labels).set(len(self._assigned))
