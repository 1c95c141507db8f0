"""`AgentMetrics`: everything an agent reports, each event one call from its loop.

    obs = AgentMetrics(app, agent, log, graph=..., guarantee=..., transactional_id=...)
    obs.batch(msgs)                        # a consumed batch entered the open transaction
    obs.committed(tally, seconds, offsets) # the transaction committed: counters, latency, last commit
    obs.aborted()                          # the transaction was aborted: its samples are discarded

Record counters move only on commit, so they describe committed output and the accounting invariant
(consumed = emitted + filtered + dead-lettered + late) holds on them exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamsvc.dlq.records import error_class_of
from streamsvc.observability import metrics as m
from streamsvc.observability.graph import SOURCE, Graph
from streamsvc.observability.status import BOARD, AgentStatus, StatusBoard


class Outcome(Protocol):
    """Outcome counts per source topic (`streamsvc.runtime.compiled.Tally` is one)."""

    consumed: Counter[str]
    emitted: Counter[str]
    filtered: Counter[str]
    late: Counter[str]
    produced: Counter[str]
    error_classes: Counter[Any]  # (topic, stage, error class) -> dead-lettered records


@dataclass
class SinkOutcome:
    """The `Outcome` of an Iceberg sink batch: rows are its emitted records."""

    consumed: Counter[str] = field(default_factory=Counter)
    emitted: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    error_classes: Counter[Any] = field(default_factory=Counter)

    def clear(self) -> None:
        for c in (self.consumed, self.emitted, self.filtered, self.late, self.produced, self.error_classes):
            c.clear()


class _Message(Protocol):
    def timestamp(self) -> tuple[int, int]: ...


class AgentMetrics:
    """The Prometheus series and status-page entry of one agent."""

    def __init__(
        self,
        app: str,
        agent: str,
        log: Any,
        graph: Graph | None = None,
        kind: str = "stream",
        guarantee: str = "exactly_once",
        transactional_id: str = "",
        board: StatusBoard = BOARD,
    ) -> None:
        self.labels = {"app": app, "agent": agent}
        self.log = log
        self.board = board
        self.consecutive_aborts = 0
        self.pending = SinkOutcome()  # for agents that count outside a Tally (the Iceberg sink)
        self._timestamps: list[int] = []  # sampled source timestamps (ms) of the open transaction
        self.status = board.register(
            AgentStatus(app, agent, kind, guarantee, transactional_id, graph or Graph())
        )
        m.AGENT_INFO.labels(
            **self.labels, kind=kind, guarantee=guarantee, transactional_id=transactional_id
        ).set(1)
        m.CONSECUTIVE_ABORTS.labels(**self.labels).set(0)
        m.LAST_COMMIT.labels(**self.labels).set(time.time())  # "no commit since start" alerts too
        # Exported at 0 from the start, so rate() sees the first increment and every panel has a series.
        for counter in (m.TRANSACTIONS_COMMITTED, m.TRANSACTIONS_ABORTED):
            counter.labels(**self.labels)
        for node in self.status.graph.nodes.values():
            if node.kind == SOURCE:
                for counter in (m.RECORDS_CONSUMED, m.RECORDS_EMITTED, m.RECORDS_FILTERED, m.RECORDS_LATE):
                    counter.labels(**self.labels, topic=node.topic)

    # ---- the loop's events -----------------------------------------------------------------------

    def batch(self, msgs: Sequence[_Message]) -> None:
        """Sample the oldest and newest source timestamps of a batch for the end-to-end latency."""
        if not msgs:
            return
        for msg in (msgs[0], msgs[-1]) if len(msgs) > 1 else (msgs[0],):
            kind, ts = msg.timestamp()
            if kind and ts > 0:
                self._timestamps.append(ts)

    def count(self, topic: str, consumed: int, emitted: int) -> None:
        """Consumed and emitted records in `pending`, counted at the next commit."""
        self.pending.consumed[topic] += consumed
        self.pending.emitted[topic] += emitted

    def dead_lettered(self, topic: str, stage: str, exc: BaseException | str) -> None:
        """One dead-lettered record in `pending`, counted at the next commit."""
        self.pending.error_classes[(topic, stage, error_class_of(exc))] += 1

    def committed(
        self,
        outcome: Outcome | None,
        seconds: float,
        offsets: Iterable[Any] | Mapping[str, Mapping[int, int]] = (),
        records: int | None = None,
    ) -> None:
        """A commit succeeded: advance the counters by `outcome` (default `pending`), observe its
        duration and the end-to-end latency samples, and log it (debug; info for Iceberg commits).
        `offsets`: the committed TopicPartitions, or {topic: {partition: next offset}}."""
        outcome = self.pending if outcome is None else outcome
        labels = self.labels
        m.COMMIT_DURATION.labels(**labels).observe(seconds)
        m.TRANSACTIONS_COMMITTED.labels(**labels).inc()
        for topic, n in outcome.consumed.items():
            m.RECORDS_CONSUMED.labels(**labels, topic=topic).inc(n)
        for topic, n in outcome.emitted.items():
            m.RECORDS_EMITTED.labels(**labels, topic=topic).inc(n)
        for topic, n in outcome.filtered.items():
            m.RECORDS_FILTERED.labels(**labels, topic=topic).inc(n)
        for topic, n in outcome.late.items():
            m.RECORDS_LATE.labels(**labels, topic=topic).inc(n)
        for topic, n in outcome.produced.items():
            m.RECORDS_PRODUCED.labels(**labels, topic=topic).inc(n)
        for (topic, stage, error_class), n in outcome.error_classes.items():
            m.count_dead_lettered(labels, topic, stage, error_class, n)
        now = time.time()
        e2e = m.END_TO_END_LATENCY.labels(**labels)
        for ts in self._timestamps:
            e2e.observe(max(0.0, now - ts / 1000))
        self._timestamps.clear()
        m.LAST_COMMIT.labels(**labels).set(now)
        self.consecutive_aborts = 0
        m.CONSECUTIVE_ABORTS.labels(**labels).set(0)
        consumed = sum(outcome.consumed.values()) if records is None else records
        self.board.committed(self.status, seconds, consumed)
        if isinstance(offsets, Mapping):
            positions = {f"{t}:{p}": o for t, parts in offsets.items() for p, o in sorted(parts.items())}
        else:
            positions = {f"{tp.topic}:{tp.partition}": tp.offset for tp in offsets if not isinstance(tp, str)}
        emit = self.log.info if self.status.kind == "iceberg" else self.log.debug
        emit("committed", records=consumed, duration_s=round(seconds, 6), offsets=positions)
        if outcome is self.pending:
            self.pending.clear()

    def aborted(self) -> None:
        """A transaction was aborted (or an Iceberg commit fenced): nothing of it counts."""
        m.TRANSACTIONS_ABORTED.labels(**self.labels).inc()
        self.consecutive_aborts += 1
        m.CONSECUTIVE_ABORTS.labels(**self.labels).set(self.consecutive_aborts)
        self._timestamps.clear()
        self.pending.clear()

    # ---- state and time ------------------------------------------------------------------------

    def restore_progress(self, store: str, partition: int) -> Callable[[int, int], None]:
        """A `read_changelog(progress=...)` callback: (offsets read, offsets to read) of one partition."""
        remaining = m.STATE_RESTORE_REMAINING.labels(**self.labels, store=store, partition=str(partition))
        total = m.STATE_RESTORE_TOTAL.labels(**self.labels, store=store, partition=str(partition))

        def progress(done: int, todo: int) -> None:
            total.set(todo)
            remaining.set(max(0, todo - done))

        return progress

    def watermarks(self, tracker: Any) -> None:
        """Export the per-partition watermark of a `WatermarkTracker` (ms) as seconds."""
        for partition in tracker.partitions:
            wm = tracker.partition_watermark(partition)
            if wm is not None:
                m.PARTITION_WATERMARK.labels(**self.labels, partition=str(partition)).set(wm / 1000)

    def forget_partitions(self, partitions: Mapping[int, Any] | Iterable[int]) -> None:
        """Stop exporting the watermark of revoked partitions."""
        for partition in partitions:
            with contextlib.suppress(KeyError):
                m.PARTITION_WATERMARK.remove(self.labels["app"], self.labels["agent"], str(partition))
