"""Time-synchronised inputs: co-partitioned partitions of one task are merged by timestamp.

A *task* is one partition number of a group of co-partitioned topics (a stream and the table it joins,
the two sides of an interval join). Fetched records of grouped topics are buffered per partition, and
released in the order Kafka Streams' `PartitionGroup` picks them: repeatedly the partition whose head
record has the smallest timestamp (ties: the group's topic order, tables and right sides first). A task
releases nothing while one of its partitions is empty and must be waited for, with Kafka Streams'
`max.task.idle.ms` semantics (`max_task_idle_ms`):

- an empty partition with records on the broker (lag > 0, or not known yet) is always waited for;
- an empty partition that is caught up is waited for up to `max_task_idle_ms` (0: not at all), in
  case its producers are about to write more;
- `max_task_idle_ms = -1` never waits (arrival order, no synchronisation).

So, for data already in the topics, which record comes next depends only on the records, never on how
they were fetched, and a replay under any lag gives the same joins.

Vectorised: per task and turn the head-by-head merge is computed as one stable sort. Picking heads
takes each partition's records in *runs*: a record larger than every earlier one of its partition leads
a run of the records after it that are not larger, and a run goes out whole once its leader is picked
(nothing another partition holds can come between). So the merge equals a stable sort by (running
maximum within the partition, topic order, offset), cut after the last buffered record of the first
partition that would have to be waited for once it runs dry.

Timestamps are the records' Kafka timestamps (records written to repartition topics carry their event
time as their timestamp).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Message

TP = tuple[str, int]
CaughtUp = Callable[[TP], bool]
"""Whether a partition's consumer position has reached its end (nothing more on the broker)."""


@dataclass
class _Queue:
    records: list[Message] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    empty_since: float | None = None  # when it was last seen empty and caught up (monotonic s)


def copartition_groups(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Connected groups of co-partitioned topics, from (stream, table|right) pairs; within a group the
    second elements (tables, right sides) come first, then by name."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    seconds: set[str] = set()
    for a, b in pairs:
        parent[find(a)] = find(b)
        seconds.add(b)
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(find(t), []).append(t)
    return sorted(
        (sorted(g, key=lambda t: (t not in seconds, t)) for g in groups.values() if len(g) > 1),
        key=lambda g: g[0],
    )


class TimeSync:
    """Per-partition buffers of the grouped topics and the timestamp-ordered release of each task."""

    def __init__(self, groups: Sequence[Sequence[str]], max_task_idle_ms: int, max_buffered: int) -> None:
        self.rank = {topic: (g, i) for g, group in enumerate(groups) for i, topic in enumerate(group)}
        self.groups = [list(g) for g in groups]
        self.max_task_idle_s = max_task_idle_ms / 1000.0
        self.disabled = max_task_idle_ms < 0
        self.max_buffered = max_buffered
        self.queues: dict[TP, _Queue] = {}
        self.paused: set[TP] = set()

    def assign(self, partitions: Iterable[TP]) -> None:
        for tp in partitions:
            if tp[0] in self.rank:
                self.queues.setdefault(tp, _Queue())

    def drop(self, partitions: Iterable[TP]) -> None:
        """Forget the buffered records of partitions rewound or moved away."""
        for tp in partitions:
            self.queues.pop(tp, None)
            self.paused.discard(tp)

    @property
    def buffered(self) -> int:
        return sum(len(q.records) for q in self.queues.values())

    def add(self, records: list[Message]) -> list[Message]:
        """Buffer the records of grouped partitions; return the others (they need no ordering)."""
        if not self.queues or self.disabled:
            return records
        free: list[Message] = []
        queues = self.queues
        for msg in records:
            q = queues.get((msg.topic() or "", msg.partition() or 0))
            if q is None:
                free.append(msg)
            else:
                q.records.append(msg)
                q.times.append(msg.timestamp()[1])
        return free

    def take(self, now: float, caught_up: CaughtUp) -> list[Message]:
        """The records every task can release now, task after task, each in merge order."""
        out: list[Message] = []
        tasks: dict[tuple[int, int], list[TP]] = {}
        for tp in self.queues:
            tasks.setdefault((self.rank[tp[0]][0], tp[1]), []).append(tp)
        for _, tps in sorted(tasks.items()):
            tps.sort(key=lambda tp: self.rank[tp[0]][1])
            out += self._release(tps, now, caught_up)
        return out

    def _may_go_dry(self, tp: TP, q: _Queue, now: float, caught_up: CaughtUp) -> bool:
        """Whether the task may go on while `tp` has no record buffered."""
        if not caught_up(tp):
            q.empty_since = None
            return False
        if q.empty_since is None:
            q.empty_since = now
        return now - q.empty_since >= self.max_task_idle_s

    def _release(self, tps: list[TP], now: float, caught_up: CaughtUp) -> list[Message]:
        queues = [self.queues[tp] for tp in tps]
        full = [i for i, q in enumerate(queues) if q.records]
        if not full:
            return []
        for i, q in enumerate(queues):
            if not q.records and not self._may_go_dry(tps[i], q, now, caught_up):
                return []
        for i in full:
            queues[i].empty_since = None
        if len(full) == 1:
            # The others may stay dry; this one cuts only if it must be waited for once emptied.
            q = queues[full[0]]
            taken, q.records, q.times = q.records, [], []
            return taken
        sizes = [len(queues[i].records) for i in full]
        times = np.concatenate([np.asarray(queues[i].times, dtype=np.int64) for i in full])
        bounds = np.cumsum([0, *sizes])
        running = np.empty_like(times)
        for j in range(len(full)):
            lo, hi = bounds[j], bounds[j + 1]
            running[lo:hi] = np.maximum.accumulate(times[lo:hi])
        source = np.repeat(np.arange(len(full)), sizes)
        order = np.lexsort((np.arange(len(times)), source, running))
        rank = np.empty(len(times), dtype=np.int64)
        rank[order] = np.arange(len(times))
        cut = len(times)
        for j, i in enumerate(full):
            # Kafka Streams checks a partition once it is empty; only caught-up ones may be passed.
            if self.max_task_idle_s > 0 or not caught_up(tps[i]):
                cut = min(cut, int(rank[bounds[j + 1] - 1]) + 1)
        picked = order[:cut]
        counts = np.bincount(source[picked], minlength=len(full)).tolist()
        flat = [m for i in full for m in queues[i].records]
        out = [flat[k] for k in picked.tolist()]
        for j, i in enumerate(full):
            q, n = queues[i], counts[j]
            if n:
                del q.records[:n], q.times[:n]
        return out

    def flow(self) -> tuple[list[TP], list[TP]]:
        """(partitions to pause, partitions to resume): a partition stops fetching while it buffers
        more than `max_buffered` records and fetches again below half of it."""
        pause, resume = [], []
        for tp, q in self.queues.items():
            n = len(q.records)
            if n > self.max_buffered and tp not in self.paused:
                pause.append(tp)
            elif n <= self.max_buffered // 2 and tp in self.paused:
                resume.append(tp)
        self.paused.update(pause)
        self.paused.difference_update(resume)
        return pause, resume
