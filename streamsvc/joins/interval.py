"""Stream-stream interval join with per-partition state.

A left record at ``t`` joins every right record with the same (non-None) key and a time ``t'`` with
``t - before_ms <= t' <= t + after_ms``. Result time is ``max(t, t')``.

Time. Each partition has one watermark for both sides: ``max(event time seen on either side) -
grace_ms``, raised record by record (and by `advance`), like Kafka Streams' per-task stream time. A
record below the watermark when it arrives is late: it joins nothing and is flagged in `late` (route it
to the DLQ with stage ``late``). A left record is buffered until the watermark passes its horizon
``t + after_ms``, a right record until it passes ``t' + before_ms``: no on-time record of the other side
can match after that, so every pair of on-time records in range is emitted exactly once, whatever the
order the two sides arrive in. For ``left``, a left record that matched nothing is emitted once as
``combine(value, None)`` when its horizon closes, so every output is final (nothing is retracted).

Determinism. Given which records are on time, results are a pure function of the records (the
multiset does not depend on interleaving or batch boundaries). Which records are late depends on how
the runtime interleaves the two topics, so feed them in event-time order (as Kafka Streams' timestamp
synchronization does) and size `grace_ms` to cover the out-of-orderness between and within the two
sides; then nothing is late and a replay reproduces the results exactly.

Null keys never match; they still advance the watermark, and in a ``left`` join an on-time left record
with a None key is emitted at once with None.

Exactly-once as for `WindowedAggregation`: `changes(partition)` goes to the partition's compacted
changelog in the output transaction; `restore` rebuilds buffers, watermark and sequence numbers, so a
restored partition continues identically. Values are encoded with orjson on arrival (a value orjson
cannot encode fails on its own record); restored values equal the originals for JSON-decoded values.
If a call raises, the partition's in-memory state is undefined: abort and restore it.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from streamsvc.errors import RecordFoldError
from streamsvc.joins._common import JoinType, check_how

__all__ = ["CombineFailed", "IntervalJoin", "IntervalJoinOutput", "JoinResult"]

L = TypeVar("L")
R = TypeVar("R")
Out = TypeVar("Out")

NO_WATERMARK = -(2**62)
_META = b"m"
_KINDS = (b"l", b"r")  # changelog key: kind + int64 time + int64 seq + record key
_TIME_SEQ = struct.Struct(">qq")
_MATCHED, _UNMATCHED = b"1", b"0"  # changelog value: flag + orjson value


@dataclass(frozen=True, slots=True)
class CombineFailed:
    """The value of a result whose `combine` raised: the runtime dead-letters it with both inputs."""

    error: Exception
    left: Any
    right: Any


class JoinResult(NamedTuple, Generic[Out]):
    """One joined record: its key, time (``max`` of the two times, the left time when unmatched)
    and ``combine(left value, right value or None)``."""

    key: bytes | None
    time_ms: int
    value: Out


@dataclass(frozen=True, slots=True)
class IntervalJoinOutput(Generic[Out]):
    """Result of one batch: joined records to produce, and which input rows were late."""

    results: list[JoinResult[Out]]
    late: npt.NDArray[np.bool_]
    watermark_ms: int | None
    """The partition's watermark after the batch (None before any record)."""


class _Entry:
    __slots__ = ("ck", "data", "matched", "seq", "time", "value")

    def __init__(self, time: int, seq: int, value: Any, data: bytes, matched: bool, ck: bytes) -> None:
        self.time, self.seq, self.value, self.data, self.matched = time, seq, value, data, matched
        self.ck = ck
        """The entry's changelog key."""

    def changelog_value(self) -> bytes:
        return (_MATCHED if self.matched else _UNMATCHED) + self.data


def _time(e: _Entry) -> int:
    return e.time


def _time_seq(e: _Entry) -> tuple[int, int]:
    return e.time, e.seq


class _Side:
    """One side's buffered records: per key, sorted by (time, seq); a heap of (horizon, seq, key)."""

    __slots__ = ("buffers", "heap", "horizon", "kind")

    def __init__(self, kind: bytes, horizon: int) -> None:
        self.kind = kind
        self.horizon = horizon
        """Added to a record's time to get its horizon: after_ms for lefts, before_ms for rights."""
        self.buffers: dict[bytes, list[_Entry]] = {}
        self.heap: list[tuple[int, int, bytes]] = []

    def changelog_key(self, key: bytes, time: int, seq: int) -> bytes:
        return self.kind + _TIME_SEQ.pack(time, seq) + key


class _Partition:
    def __init__(self, before: int, after: int) -> None:
        self.max_t: int | None = None
        self.wm = NO_WATERMARK
        self.seq = 0
        self.meta_dirty = False
        self.sides = (_Side(_KINDS[0], after), _Side(_KINDS[1], before))
        self.dirty: dict[bytes, bytes | None] = {}
        self.unlogged: set[bytes] = set()
        """Changelog keys of entries added since the last `changes()`: not in the changelog yet."""

    def insert(self, side: _Side, key: bytes, e: _Entry) -> None:
        bucket = side.buffers.setdefault(key, [])
        if not bucket or _time_seq(bucket[-1]) < (e.time, e.seq):
            bucket.append(e)
        else:
            bucket.insert(bisect_left(bucket, (e.time, e.seq), key=_time_seq), e)
        heappush(side.heap, (e.time + side.horizon, e.seq, key))
        self.dirty[e.ck] = e.changelog_value()
        self.unlogged.add(e.ck)

    def mark_matched(self, e: _Entry) -> None:
        e.matched = True
        self.dirty[e.ck] = e.changelog_value()

    def evict(self, side: _Side) -> list[tuple[bytes, _Entry]]:
        """Remove and return (in horizon order) the entries whose horizon the watermark has passed."""
        out: list[tuple[bytes, _Entry]] = []
        heap, wm = side.heap, self.wm
        while heap and heap[0][0] < wm:
            horizon, seq, key = heappop(heap)
            bucket = side.buffers[key]
            e = bucket.pop(bisect_left(bucket, (horizon - side.horizon, seq), key=_time_seq))
            if not bucket:
                del side.buffers[key]
            ck = e.ck
            if ck in self.unlogged:
                self.unlogged.discard(ck)
                del self.dirty[ck]
            else:
                self.dirty[ck] = None
            out.append((key, e))
        return out

    def changes(self) -> dict[bytes, bytes | None]:
        out, self.dirty = self.dirty, {}
        self.unlogged.clear()
        if self.meta_dirty:
            out[_META] = orjson.dumps({"max_t": self.max_t, "wm": self.wm, "seq": self.seq})
            self.meta_dirty = False
        return out

    def load(self, live: dict[bytes, bytes]) -> None:
        meta = live.pop(_META, None)
        if meta is not None:
            m = orjson.loads(meta)
            self.max_t, self.wm, self.seq = m["max_t"], m["wm"], m["seq"]
        for ck, value in live.items():
            side = self.sides[_KINDS.index(ck[:1])]
            time, seq = _TIME_SEQ.unpack_from(ck, 1)
            key, data = ck[1 + _TIME_SEQ.size :], value[1:]
            e = _Entry(time, seq, orjson.loads(data), data, value[:1] == _MATCHED, ck)
            side.buffers.setdefault(key, []).append(e)
            side.heap.append((time + side.horizon, seq, key))
        for side in self.sides:
            for bucket in side.buffers.values():
                bucket.sort(key=_time_seq)
            heapify(side.heap)


class IntervalJoin(Generic[L, R, Out]):
    """Interval join of a left and a right stream on the record key, with per-partition state.

    ``how="inner"`` emits matched pairs; ``"left"`` also emits each unmatched left record once, with
    None, when its horizon closes. `combine(left value, right value or None)` builds each output.
    """

    def __init__(
        self,
        before_ms: int,
        after_ms: int,
        how: JoinType,
        combine: Callable[[L, R | None], Out],
        grace_ms: int = 0,
    ) -> None:
        for name, v in (("before_ms", before_ms), ("after_ms", after_ms), ("grace_ms", grace_ms)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an int, got {v!r}")
        if before_ms + after_ms < 0:
            raise ValueError(
                f"empty interval: before_ms + after_ms must be >= 0, got {before_ms} + {after_ms}"
            )
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        self.before_ms, self.after_ms, self.grace_ms = before_ms, after_ms, grace_ms
        self.how: JoinType = check_how(how)
        self.combine = combine
        self._parts: dict[int, _Partition] = {}

    def _part(self, partition: int) -> _Partition:
        state = self._parts.get(partition)
        if state is None:
            state = self._parts[partition] = _Partition(self.before_ms, self.after_ms)
        return state

    @property
    def partitions(self) -> frozenset[int]:
        """Partitions with state (processed or restored, not dropped)."""
        return frozenset(self._parts)

    def process_left(
        self, partition: int, keys: Sequence[bytes | None], times: npt.ArrayLike, values: Sequence[L]
    ) -> IntervalJoinOutput[Out]:
        """Fold a batch of left records of `partition` (offset order; times in ms)."""
        return self._process(partition, 0, keys, times, values)

    def process_right(
        self, partition: int, keys: Sequence[bytes | None], times: npt.ArrayLike, values: Sequence[R]
    ) -> IntervalJoinOutput[Out]:
        """Fold a batch of right records of `partition` (offset order; times in ms)."""
        return self._process(partition, 1, keys, times, values)

    def _process(
        self,
        partition: int,
        side_index: int,
        keys: Sequence[bytes | None],
        times: npt.ArrayLike,
        values: Sequence[Any],
    ) -> IntervalJoinOutput[Out]:
        ts: list[int] = np.asarray(times, dtype=np.int64).reshape(-1).tolist()
        if not len(keys) == len(ts) == len(values):
            raise ValueError(
                f"keys, times and values differ in length: {len(keys)}, {len(ts)}, {len(values)}"
            )
        st = self._part(partition)
        mine, other = st.sides[side_index], st.sides[1 - side_index]
        is_left = side_index == 0
        # Other-side times t' that match a record at t: t + lo <= t' <= t + hi.
        lo, hi = (-self.before_ms, self.after_ms) if is_left else (-self.after_ms, self.before_ms)
        emit_unmatched = is_left and self.how == "left"
        combine, grace = self._combine, self.grace_ms
        results: list[JoinResult[Out]] = []
        late = np.zeros(len(ts), dtype=np.bool_)
        for i, t in enumerate(ts):
            if t < st.wm:
                late[i] = True
                continue
            key, value = keys[i], values[i]
            try:
                data = orjson.dumps(value)
            except TypeError as exc:  # before any state changes: the record fails on its own
                raise RecordFoldError(i, exc) from exc
            if st.max_t is None or t > st.max_t:
                st.max_t = t
                st.wm = max(st.wm, t - grace)
                st.meta_dirty = True
            if key is None:
                if emit_unmatched:
                    results.append(JoinResult(None, t, combine(value, None)))
                continue
            matched = False
            bucket = other.buffers.get(key)
            if bucket:
                # Buffered entries past their horizon are never in range of an on-time record.
                for j in range(bisect_left(bucket, t + lo, key=_time), len(bucket)):
                    e = bucket[j]
                    if e.time > t + hi:
                        break
                    matched = True
                    when = max(t, e.time)
                    if is_left:
                        results.append(JoinResult(key, when, combine(value, e.value)))
                    else:
                        results.append(JoinResult(key, when, combine(e.value, value)))
                        if not e.matched:
                            st.mark_matched(e)
            ck = mine.changelog_key(key, t, st.seq)
            st.insert(mine, key, _Entry(t, st.seq, value, data, matched, ck))
            st.seq += 1
            st.meta_dirty = True
        results.extend(self._close(st))
        return IntervalJoinOutput(results, late, None if st.wm == NO_WATERMARK else st.wm)

    def _close(self, st: _Partition) -> list[JoinResult[Out]]:
        lefts = st.evict(st.sides[0])
        st.evict(st.sides[1])
        if self.how != "left":
            return []
        return [JoinResult(key, e.time, self._combine(e.value, None)) for key, e in lefts if not e.matched]

    def _combine(self, left: Any, right: Any) -> Any:
        """`combine`, or a `CombineFailed` result (routed to the DLQ) when it raises."""
        try:
            return self.combine(left, right)
        except Exception as exc:
            return CombineFailed(exc, left, right)

    def advance(self, partition: int, watermark_ms: int) -> list[JoinResult[Out]]:
        """Raise a partition's watermark without records (e.g. a wall-clock fallback for a quiet
        partition) and return the unmatched left records that closes (``left`` joins)."""
        st = self._part(partition)
        if watermark_ms > st.wm:
            st.wm = int(watermark_ms)
            st.meta_dirty = True
        return self._close(st)

    def watermark(self, partition: int) -> int | None:
        """The partition's watermark; None before its first record."""
        st = self._parts.get(partition)
        return None if st is None or st.wm == NO_WATERMARK else st.wm

    def buffered(self, partition: int) -> tuple[int, int]:
        """How many (left, right) records the partition holds."""
        st = self._parts.get(partition)
        if st is None:
            return 0, 0
        left, right = (sum(map(len, side.buffers.values())) for side in st.sides)
        return left, right

    def changes(self, partition: int) -> dict[bytes, bytes | None]:
        """Changelog entries changed since the last call (None: delete), for the transaction that
        commits the batches they came from."""
        st = self._parts.get(partition)
        return {} if st is None else st.changes()

    def restore(self, partition: int, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Replace a partition's state with the one a changelog describes (entries in log order; the
        last per key wins, None deletes). Afterwards `changes` is empty until the next batch."""
        latest: dict[bytes, bytes | None] = {}
        for key, value in entries:
            latest[key] = value
        st = self._parts[partition] = _Partition(self.before_ms, self.after_ms)
        st.load({k: v for k, v in latest.items() if v is not None})

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's state (its changelog keeps it)."""
        self._parts.pop(partition, None)
