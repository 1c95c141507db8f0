"""The one owner of an agent's task lifecycle: assign, process, commit, revoke, lose, fail, close.

Both agents -- Kafka -> Kafka under a commit protocol (`runtime.agent.StreamTask`) and Kafka -> Iceberg
(`sinks.iceberg.agent.IcebergTask`) -- run through `TaskManager.run`, as Kafka Streams' tasks run
through its TaskManager, so these rules hold everywhere (BRIEF §3.1):

- A failed task never commits. Any exception leaving the loop marks the manager failed *before* the
  consumer closes, so the revoke callback that `close()` triggers only forgets; the open transaction
  is aborted, best effort, and the agent exits.
- Positions advance only for records whose outputs the task has buffered (`Task.process` returned).
- An abortable error, a refused record (`RetryBatch`) or an aborted commit discards everything since
  the last commit: every partition that took part is rewound, state included, to its last committed
  position. A rewind decided inside a rebalance callback (incremental protocols keep partitions across
  a rebalance) is carried out after `consume()` returns, and that call's records of those partitions are
  dropped, so no record fetched before the rewind is processed after it.
- The revoke callback commits a healthy transaction before the partitions move; a lost partition's
  transaction is aborted.
- `max_consecutive_aborts` aborts in a row without a commit mark the agent not ready (livelock guard).
- An assignment that disagrees with the subscription (a static member handed a cached assignment
  after a restart with another topic, or missing partitions added since) forces a rejoin.

Rebalance callbacks make no blocking call on the consumer that runs them: confluent-kafka keeps one
call state per client and thread, and a nested blocking call clears it, so the next callback of the
same `consume()` aborts the process. Committed offsets and end offsets are read through a second,
group-less consumer (`reader`) instead. The `Task` contract is in `runtime.task`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from streamsvc.config import Settings
from streamsvc.eos.errors import AbortableError, DeadlineExceeded, ErrorKind, classify, is_fatal, kafka_error
from streamsvc.errors import FatalRuntimeError, StreamsvcError
from streamsvc.faults import FaultHook, no_faults
from streamsvc.observability import metrics as m
from streamsvc.observability.http import HealthState
from streamsvc.observability.lag import ConsumerLag
from streamsvc.observability.logging import kafka_logging
from streamsvc.observability.recorder import AgentMetrics
from streamsvc.runtime.membership import MEMBER_ONLY, fmt_partitions, is_incremental, uncovered_partitions
from streamsvc.runtime.startup import check_reachable
from streamsvc.runtime.task import TP, RetryBatch, Rewind, StaleAssignment, Task
from streamsvc.runtime.topics import list_offsets

MAX_RESUBSCRIBES = 3


class TaskManager:
    """Runs one `Task` with one consumer until `stop`, caught up (`until_caught_up`) or a failure."""

    @classmethod
    def for_settings(
        cls,
        task: Task,
        settings: Settings,
        log: Any,
        labels: dict[str, str],
        obs: AgentMetrics,
        health: HealthState | None,
        until_caught_up: bool,
        faults: FaultHook,
    ) -> TaskManager:
        """The manager of `task` under an agent's `settings`."""
        return cls(
            task,
            bootstrap_servers=settings.bootstrap_servers,
            batch_size=settings.batch_size,
            poll_timeout_s=settings.poll_timeout_ms / 1000.0,
            log=log,
            labels=labels,
            obs=obs,
            health=health,
            until_caught_up=until_caught_up,
            max_consecutive_aborts=settings.max_consecutive_aborts,
            faults=faults,
        )

    def __init__(
        self,
        task: Task,
        *,
        bootstrap_servers: str,
        batch_size: int,
        poll_timeout_s: float,
        log: Any,
        labels: dict[str, str],
        obs: AgentMetrics,
        health: HealthState | None = None,
        until_caught_up: bool = False,
        max_consecutive_aborts: int = 10,
        faults: FaultHook = no_faults,
    ) -> None:
        self.task = task
        self.name = task.name
        self.bootstrap_servers = bootstrap_servers
        self.batch_size, self.poll_timeout_s = batch_size, poll_timeout_s
        self.log, self.labels, self.obs = log, labels, obs
        self.health = health or HealthState()
        self.until_caught_up = until_caught_up
        self.max_consecutive_aborts = max_consecutive_aborts
        self.faults = faults
        self.assigned: set[TP] = set()
        self.committed: dict[TP, int] = {}  # next offsets as of the last commit
        self.positions: dict[TP, int] = {}  # next offsets processed since the last commit
        self.end_at_assign: dict[TP, int] = {}
        self.failed: BaseException | None = None
        self.commits = 0
        self.consecutive_aborts = 0
        self.first_record_at: float | None = None  # monotonic; for throughput reporting
        # A rebalance inside consume() can hand back records fetched before it *and* the same offsets
        # fetched again after it: `_next` (the next offset a partition may deliver) drops the copies.
        self._next: dict[TP, int] = {}
        self._first: dict[TP, int] = {}  # first offset processed where nothing is committed yet
        self._latched: BaseException | None = None
        self._rewind_after_poll: set[TP] = set()
        self._resubscribes = 0
        self._resubscribe_due = False
        self.consumer: Consumer
        self.reader: Consumer | None = None
        self.sync = task.time_sync

    # ---- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume, process and commit until stopped; commits the open work before returning."""
        conf = self.task.consumer_config()
        self.incremental = is_incremental(conf)
        read_committed = conf.get("isolation.level", "read_committed") == "read_committed"
        held = lambda: {tp: self.committed.get(tp) for tp in self.assigned}  # noqa: E731
        self.lag = ConsumerLag(self.labels, held, read_committed, on_total=self.task.lag_total)
        # Quietly first: clients on a wrong address would log every failed connect until they close.
        self.admin = check_reachable(self.bootstrap_servers)
        self.consumer = Consumer(
            {
                **self.lag.client_config(),
                **kafka_logging(**self.labels),
                **conf,
                "error_cb": self._on_client_error,
                "stats_cb": self.lag.on_stats,
            }
        )
        plain = {k: v for k, v in conf.items() if not callable(v) and k not in MEMBER_ONLY}
        self.reader = Consumer({**plain, **kafka_logging(**self.labels, component="offsets")})
        try:
            self.task.open(self.consumer, self.admin)
            self.health.set_ready(self.name, False)
            self._subscribe()
            self.health.polled(self.name)
            while not stop.is_set():
                self.task.before_poll()
                msgs = self.consumer.consume(num_messages=self.batch_size, timeout=self.poll_timeout_s)
                self._raise_latched()
                if self._resubscribe_due:
                    self._resubscribe()
                    continue
                records = self._accept(msgs)
                if self._rewind_after_poll:
                    self._rewind(self._rewind_after_poll)
                    records = [
                        r for r in records if (r.topic(), r.partition()) not in self._rewind_after_poll
                    ]
                    self._rewind_after_poll = set()
                now = time.monotonic()
                if self.sync is not None:
                    records = self._synchronise(records, now)
                self.health.polled(self.name)
                m.LAST_POLL.labels(**self.labels).set(time.time())
                if records:
                    self._process(records)
                self.task.tick(now)
                if self.task.pending and self.task.commit_due(now, idle=not msgs):
                    self.commit()
                if self.until_caught_up and self.caught_up() and self.commit() and not self.task.pending:
                    self.task.finish()
                    break
            self.commit(rewind=False)
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self._close()

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            self.task.subscription(),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _resubscribe(self) -> None:
        """Leave and rejoin the group: the coordinator then computes a fresh assignment."""
        self._resubscribe_due = False
        self._resubscribes += 1
        if self._resubscribes > MAX_RESUBSCRIBES:
            raise StaleAssignment(
                f"{self.name}: the group keeps assigning partitions that do not match the subscription "
                f"{self.task.subscription()}; another member of the group may subscribe to other topics"
            )
        self.log.warning("stale_assignment_rejoining", attempt=self._resubscribes)
        self.consumer.unsubscribe()
        self._subscribe()

    def _accept(self, msgs: list[Message]) -> list[Message]:
        """The records among `msgs` to process: no consumer events, no stale or repeated fetches."""
        good: list[Message] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if is_fatal(err):
                    raise FatalRuntimeError(f"fatal consumer error: {err}")
                if err.code() != KafkaError._PARTITION_EOF:
                    self.log.warning("consume_error", error=str(err))
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            if tp not in self.assigned:  # a stale fetch of a partition revoked meanwhile
                continue
            offset = msg.offset() or 0
            if offset < self._next.get(tp, offset):
                continue
            self._next[tp] = offset + 1
            if tp not in self.committed and tp not in self._first:
                self._first[tp] = offset
            good.append(msg)
        if good and self.first_record_at is None:
            self.first_record_at = time.monotonic()
        return good

    def _synchronise(self, records: list[Message], now: float) -> list[Message]:
        """Buffer the records of co-partitioned inputs and take what each task may process now, in
        timestamp order; pause partitions that buffer too much."""
        assert self.sync is not None
        free = self.sync.add(records)
        ready = self.sync.take(now, self._fetched_to_end)
        pause, resume = self.sync.flow()
        if pause:
            self.consumer.pause([TopicPartition(t, p) for t, p in pause])
        if resume:
            self.consumer.resume([TopicPartition(t, p) for t, p in resume])
        return free + ready if free else ready

    def _fetched_to_end(self, tp: TP) -> bool:
        """Whether the consumer has fetched everything the broker holds of `tp` (its cached end)."""
        part = TopicPartition(*tp)
        low, high = self.consumer.get_watermark_offsets(part, cached=True)
        if high < 0:
            return False  # no fetch response yet: the end is not known
        position = self.consumer.position([part])[0].offset
        done = max(position, self._next.get(tp, -1), self.committed.get(tp, -1))
        return done >= high or high <= low

    def _process(self, records: list[Message]) -> None:
        try:
            self.task.process(records)
        except BaseException as exc:
            reason = self._abortable(exc)
            self.task.abort()
            self._count_abort(reason, progress=isinstance(exc, RetryBatch))
            self._rewind(self.assigned)
            return
        self.obs.batch(records)
        positions = self.positions
        for msg in records:  # in offset order per partition, so the last one wins
            positions[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1

    # ---- commit and abort -----------------------------------------------------------------------

    def commit(self, rewind: bool = True) -> bool:
        """Commit the open work (never when failed). False when it was discarded instead; with
        `rewind`, every assigned partition is then rewound to its last commit."""
        if self.failed is not None:
            return False
        if not self.task.pending:
            return True
        positions = dict(self.positions)
        started = time.perf_counter()
        try:
            outcome = self.task.commit(positions, self.committed)
        except BaseException as exc:
            outcome = Rewind(self._abortable(exc), progress=isinstance(exc, RetryBatch))
            self.task.abort()
        if outcome is None:
            self.committed.update(positions)
            self.positions.clear()
            self.commits += 1
            by_topic: dict[str, dict[int, int]] = {}
            for (topic, partition), offset in positions.items():
                by_topic.setdefault(topic, {})[partition] = offset
            self.obs.committed(self.task.outcome(), time.perf_counter() - started, by_topic)
            if self.consecutive_aborts >= self.max_consecutive_aborts:
                self.log.info("livelock_cleared", aborts=self.consecutive_aborts)
                self.health.clear_unready(self.name, "consecutive_aborts")
            self.consecutive_aborts = 0
            self.faults("after_commit")
            return True
        self.committed.update(outcome.to)
        self._count_abort(outcome.reason, outcome.progress)
        if rewind:
            self._rewind(self.assigned)
        return False

    def _abortable(self, exc: BaseException) -> str:
        """The reason to abort and rewind for `exc`; re-raises what must end the agent instead."""
        if isinstance(exc, RetryBatch | AbortableError):
            return str(exc)
        err = kafka_error(exc)
        if err is not None:
            if classify(err) is ErrorKind.FATAL:
                raise FatalRuntimeError(f"fatal Kafka error: {err}") from exc
            return str(err)
        raise exc

    def _abort(self, reason: str) -> None:
        self.task.abort()
        self._count_abort(reason)

    def _count_abort(self, reason: str, progress: bool = False) -> None:
        self.positions.clear()
        self.obs.aborted()
        if not progress:  # a re-run that dead-letters what failed is no livelock
            self.consecutive_aborts += 1
        m.CONSECUTIVE_ABORTS.labels(**self.labels).set(self.consecutive_aborts)
        if progress:
            self.log.info("transaction_aborted_rerun", reason=reason)
            return
        self.log.warning("transaction_aborted", reason=reason, consecutive=self.consecutive_aborts)
        if self.consecutive_aborts == self.max_consecutive_aborts:
            self.health.set_unready(
                self.name, "consecutive_aborts", f"{self.consecutive_aborts} aborts: {reason}"
            )
            self.log.error(
                "agent_livelocked",
                reason=reason,
                aborts=self.consecutive_aborts,
                stuck_at=self._stuck_at(),
            )

    def _stuck_at(self) -> dict[str, int]:
        """Where each assigned partition keeps restarting: its last commit, else its first record."""
        at = {tp: self.committed.get(tp, self._first.get(tp)) for tp in sorted(self.assigned)}
        return {f"{t}:{p}": o for (t, p), o in at.items() if o is not None}

    def _rewind(self, partitions: set[TP]) -> None:
        """Seek `partitions` back to their last commit, state included."""
        partitions = partitions & self.assigned
        if not partitions:
            return
        if self.sync is not None:  # buffered records are fetched again from the rewound positions
            resume = self.sync.paused & partitions
            self.sync.drop(partitions)
            self.sync.assign(partitions)
            if resume:
                self.consumer.resume([TopicPartition(t, p) for t, p in sorted(resume)])
        self.task.restore(partitions, self.committed)
        for topic, partition in sorted(partitions):
            tp = (topic, partition)
            target = self.committed.get(tp, self._first.get(tp))
            self._next.pop(tp, None)
            if target is None:
                continue  # nothing processed since the assignment: nothing to go back over
            self._next[tp] = target
            try:
                self.consumer.seek(TopicPartition(topic, partition, target))
            except KafkaException as exc:
                # Going on from the current position would skip the aborted records: restart instead.
                raise FatalRuntimeError(f"cannot rewind {topic}:{partition} to {target}: {exc}") from exc
        self.log.info("rewound", partitions=len(partitions))

    # ---- progress -------------------------------------------------------------------------------

    def consumer_positions(self, partitions: set[TP] | None = None) -> dict[TP, int]:
        """The consumer's positions (past transaction markers) of partitions fetched from."""
        tps = sorted(self.assigned if partitions is None else partitions & self.assigned)
        got = self.consumer.position([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}

    def caught_up(self) -> bool:
        """Every assigned partition processed up to its end offset at assignment."""
        if not self.assigned or (self.sync is not None and self.sync.buffered):
            return False
        positions = self.consumer_positions()

        def done(tp: TP, end: int) -> bool:
            return max(positions.get(tp, 0), self.committed.get(tp, 0)) >= end

        fixed = [tp for tp in self.assigned if tp[0] not in self.task.growing_sources]
        if not all(done(tp, self.end_at_assign.get(tp, 0)) for tp in fixed):
            return False
        if not self._unassigned_caught_up():
            return False
        if self.task.growing_sources and self.task.pending:
            return False  # what the open transaction wrote to them is not readable yet
        growing = [tp for tp in self.assigned if tp[0] in self.task.growing_sources]
        if not growing:
            return True
        # The log end, not the last stable offset: commit_transaction() returns before the coordinator
        # has written the commit markers, and until then the LSO still stands before what we just wrote.
        assert self.admin is not None
        ends = list_offsets(self.admin, growing, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        return all(done(tp, ends[tp]) for tp in growing)

    def _unassigned_caught_up(self) -> bool:
        """Source partitions this member does not hold are committed up to their end by the group. An
        incremental protocol can hand partitions over one by one, and a departed static member keeps
        its own until its session times out: caught up means the group's input, not this member's.
        (A committed offset just short of a transaction marker reads as not yet: the partition is
        then checked once it is assigned here.)"""
        assert self.reader is not None
        topics = set(self.task.subscription()) - self.task.growing_sources
        meta = self.reader.list_topics(timeout=10).topics
        others = [
            TopicPartition(t, p)
            for t in sorted(topics)
            if t in meta
            for p in meta[t].partitions
            if (t, p) not in self.assigned
        ]
        if not others:
            return True
        for tp in self.reader.committed(others, timeout=30):
            high = self.reader.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)[1]
            if high > max(tp.offset, 0):
                return False
        return True

    # ---- rebalance callbacks (run inside consume()) -------------------------------------------

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # surfaced after consume() returns, not inside librdkafka
            self._latched = self._latched or exc

    def _on_client_error(self, err: KafkaError) -> None:
        if is_fatal(err):
            self._latched = self._latched or FatalRuntimeError(f"fatal Kafka client error: {err}")
        else:
            self.log.warning("kafka_client_error", error=str(err))

    def _raise_latched(self) -> None:
        latched, self._latched = self._latched, None
        if latched is None:
            return
        if isinstance(latched, StreamsvcError):
            raise latched
        raise FatalRuntimeError(f"{type(latched).__name__}: {latched}") from latched

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def assign() -> None:
            m.REBALANCES.labels(**self.labels, kind="assign").inc()
            tps = [(tp.topic, tp.partition) for tp in partitions]
            stale = self._stale(tps)
            if stale:
                self.log.warning("stale_assignment", problem=stale, partitions=fmt_partitions(tps))
                self._resubscribe_due = True
                return
            self._resubscribes = 0
            assert self.reader is not None
            starts = self.task.start_positions(self.reader, tps)
            for tp in tps:
                self.assigned.add(tp)
                self._next.pop(tp, None)
                self._first.pop(tp, None)
                if tp in starts:
                    self.committed[tp] = self._next[tp] = starts[tp]
                else:
                    self.committed.pop(tp, None)
                if self.until_caught_up:
                    _, high = self.reader.get_watermark_offsets(TopicPartition(*tp), timeout=30)
                    self.end_at_assign[tp] = high
            self.task.restore(set(tps), self.committed)
            if self.sync is not None:
                self.sync.drop(tps)  # an eager assignment fetches every partition afresh, unpaused
                self.sync.assign(tps)
            assignment = [TopicPartition(t, p, starts.get((t, p), self.task.default_start)) for t, p in tps]
            if self.incremental:
                consumer.incremental_assign(assignment)
            else:
                consumer.assign(assignment)
            m.ASSIGNED_PARTITIONS.labels(**self.labels).set(len(self.assigned))
            self.health.set_ready(self.name, True)
            self.log.info("partitions_assigned", partitions={f"{t}:{p}": starts.get((t, p)) for t, p in tps})

        self._guard(assign)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def revoke() -> None:
            m.REBALANCES.labels(**self.labels, kind="revoke").inc()
            tps = {(tp.topic, tp.partition) for tp in partitions}
            if self.failed is None and tps & self.assigned:
                try:
                    self.faults("revoke")
                    committed = self.commit(rewind=False)  # before the partitions move
                except BaseException as exc:
                    self._abort(self._abortable(exc))
                    committed = False
                if not committed:
                    self._rewind_after_poll |= self.assigned - tps
            self._forget(tps)
            self.log.info("partitions_revoked", partitions=len(tps))

        self._guard(revoke)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def lost() -> None:
            m.REBALANCES.labels(**self.labels, kind="lost").inc()
            tps = {(tp.topic, tp.partition) for tp in partitions}
            if self.task.pending:  # another member may own them already: never commit this work
                self._abort(f"partitions lost: {fmt_partitions(tps)}")
                self._rewind_after_poll |= self.assigned - tps
            self._forget(tps)
            self.log.warning("partitions_lost", partitions=len(tps))

        self._guard(lost)

    def _forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self.assigned.discard(tp)
            for book in (self.committed, self.positions, self._next, self._first, self.end_at_assign):
                book.pop(tp, None)
        self._rewind_after_poll -= tps
        if self.sync is not None:
            self.sync.drop(tps)
        self.task.drop(tps)
        m.ASSIGNED_PARTITIONS.labels(**self.labels).set(len(self.assigned))

    def _stale(self, tps: list[TP]) -> str | None:
        """Why an assignment cannot be right for this subscription, or None."""
        subscribed = set(self.task.subscription())
        foreign = sorted({t for t, _ in tps} - subscribed)
        if foreign:
            return f"partitions of {foreign}, which this agent does not subscribe to"
        if self.incremental:
            return None
        try:
            return uncovered_partitions(
                self.bootstrap_servers,
                str(self.task.consumer_config()["group.id"]),
                subscribed,
            )
        except (KafkaException, KeyError, TimeoutError) as exc:  # the check is a safety net, not a gate
            self.log.warning("assignment_check_failed", error=str(exc))
            return None

    # ---- failure and close ----------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
            self.health.set_ready(self.name, False)
        try:
            self.task.abort()  # best effort; a stuck client raises at once
        except BaseException as abort_exc:
            self.log.warning("abort_after_failure_failed", error=repr(abort_exc))

    def _close(self) -> None:
        if not isinstance(self.failed, DeadlineExceeded):  # a stuck client would hang close() too
            try:
                self.consumer.close()  # runs the revoke callback: it commits only a healthy task
            except (KafkaException, RuntimeError) as exc:
                self.log.warning("consumer_close_failed", error=str(exc))
        self._latched = None
        if self.reader is not None:
            try:
                self.reader.close()
            except (KafkaException, RuntimeError) as exc:
                self.log.warning("reader_close_failed", error=str(exc))
        try:
            self.task.close()
        except BaseException as exc:
            self.log.warning("task_close_failed", error=repr(exc))
        self.health.set_ready(self.name, False)
