"""Session windows (see `Session`), one record at a time."""

from __future__ import annotations

import heapq
import itertools
import struct
from bisect import bisect_left
from collections.abc import Hashable, Mapping
from typing import Any

from streamsvc.windows import _codec
from streamsvc.windows._base import RecordEngine
from streamsvc.windows.aggregations import Aggregation
from streamsvc.windows.results import WindowResult
from streamsvc.windows.spec import Emit, Session

_HEAD = struct.Struct(">q?")  # end, closed; then the accumulator unless closed

_CLOSE, _PURGE = 0, 1


class _Sess:
    __slots__ = ("acc", "closed", "end")

    def __init__(self, end: int, acc: Any, closed: bool = False) -> None:
        self.end, self.acc, self.closed = end, acc, closed


class _Key:
    __slots__ = ("sessions", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []  # sorted; sessions are disjoint, so their ends are sorted too
        self.sessions: dict[int, _Sess] = {}


class SessionRecords(RecordEngine):
    """Per key, disjoint sessions ``[start, end)``. Closed sessions keep their bounds (not their
    accumulator) until ``end + gap + grace <= wm``, after which no on-time record can overlap them.

    Timers are lazy: each open session has a close timer for its start due at or before its close
    time; a timer that fires early (the session grew since) is re-armed, so extending a session, the
    common case, pushes no timer.
    """

    def __init__(self, spec: Session, aggregation: Aggregation, emit: Emit, lateness_ms: int) -> None:
        super().__init__(aggregation, emit, spec.grace_ms, lateness_ms)
        self.gap = spec.gap_ms
        self.state: dict[Hashable, _Key] = {}
        self.timers: list[tuple[int, int, Hashable, int, int]] = []  # (due, seq, key, start, kind)
        self.seq = itertools.count()
        self.changed: dict[tuple[Hashable, int, int], None] = {}
        self.born: set[tuple[Hashable, int, int]] = set()  # update mode: sessions created in this batch
        self.retracted: list[WindowResult] = []

    def _timer(self, due: int, key: Hashable, start: int, kind: int) -> None:
        heapq.heappush(self.timers, (due, next(self.seq), key, start, kind))

    def record(self, key: Hashable, t: int, value: Any, wm: int) -> bool:
        gap, grace, agg = self.gap, self.grace, self.agg
        if t + gap + grace <= wm:
            return False
        ks = self.state.get(key)
        if ks is None:
            _codec.encode_key(key)
            ks = self.state[key] = _Key()
        starts, sessions = ks.starts, ks.sessions
        hi = bisect_left(starts, t + gap)
        lo = hi
        while lo:
            prev = sessions[starts[lo - 1]]
            if prev.end <= t:
                break
            if prev.closed or prev.end + grace <= wm:
                return False  # it would change a closed session
            lo -= 1
        if lo == hi:
            starts.insert(lo, t)
            sessions[t] = _Sess(t + gap, agg.add(agg.init(), value))
            self.dirty.add((_codec.SESSION, key, t))
            self._timer(t + gap + grace, key, t, _CLOSE)
            if not self.final:
                self._track(key, t, t + gap, [])
            return True
        first = starts[lo]
        sess = sessions[first]
        removed = [] if self.final else [(s, sessions[s].end) for s in starts[lo:hi]]
        for s in starts[lo + 1 : hi]:  # merge the later overlapping sessions into the first
            other = sessions.pop(s)
            sess.acc, sess.end = agg.merge(sess.acc, other.acc), other.end
            self.dirty.add((_codec.SESSION, key, s))
        del starts[lo + 1 : hi]
        sess.acc = agg.add(sess.acc, value)
        sess.end = max(sess.end, t + gap)
        start = first
        if t < first:
            start = starts[lo] = t
            sessions[t] = sessions.pop(first)
            self.dirty.add((_codec.SESSION, key, first))
            self._timer(sess.end + grace, key, t, _CLOSE)
        self.dirty.add((_codec.SESSION, key, start))
        if not self.final:
            self._track(key, start, sess.end, removed)
        return True

    def _track(self, key: Hashable, start: int, end: int, removed: list[tuple[int, int]]) -> None:
        new = (key, start, end)
        for s, e in removed:
            old = (key, s, e)
            if old != new:
                self.changed.pop(old, None)
                if old in self.born:
                    self.born.discard(old)
                else:
                    self.retracted.append(WindowResult(key, s, e, None, tombstone=True))
        if (start, end) not in removed:
            self.born.add(new)
        self.changed[new] = None

    def batch_updates(self) -> list[WindowResult]:
        result = self.agg.result
        out = self.retracted
        out += [WindowResult(k, s, e, result(self.state[k].sessions[s].acc)) for k, s, e in self.changed]
        self.retracted, self.born = [], set()
        self.changed.clear()
        return out

    def close(self) -> list[WindowResult]:
        out: list[WindowResult] = []
        timers, wm, grace = self.timers, self.wm, self.grace
        while timers and timers[0][0] <= wm:
            _, _, key, start, kind = heapq.heappop(timers)
            ks = self.state.get(key)
            sess = None if ks is None else ks.sessions.get(start)
            if ks is None or sess is None or sess.closed != (kind == _PURGE):
                continue  # stale: merged away or already closed
            if kind == _CLOSE:
                if sess.end + grace > wm:
                    self._timer(sess.end + grace, key, start, _CLOSE)  # it grew since the timer was set
                    continue
                if self.final:
                    out.append(WindowResult(key, start, sess.end, self.agg.result(sess.acc)))
                sess.acc, sess.closed = None, True
                self._timer(sess.end + self.gap + grace, key, start, _PURGE)
            else:
                del ks.sessions[start]
                del ks.starts[bisect_left(ks.starts, start)]
                if not ks.starts:
                    del self.state[key]
            self.dirty.add((_codec.SESSION, key, start))
        return out

    def entry_value(self, kind: bytes, key: Hashable, time: int) -> bytes | None:
        ks = self.state.get(key)
        sess = None if ks is None else ks.sessions.get(time)
        if sess is None:
            return None
        head = _HEAD.pack(sess.end, sess.closed)
        return head if sess.closed else head + self.agg.dumps(sess.acc)

    def load(self, entries: Mapping[bytes, bytes]) -> None:
        for k, v in entries.items():
            _, start, key = _codec.parse_entry_key(k)
            end, closed = _HEAD.unpack_from(v)
            ks = self.state.get(key)
            if ks is None:
                ks = self.state[key] = _Key()
            ks.sessions[start] = _Sess(end, None if closed else self.agg.loads(v[_HEAD.size :]), closed)
            due = end + self.gap + self.grace if closed else end + self.grace
            self.timers.append((due, next(self.seq), key, start, _PURGE if closed else _CLOSE))
        for ks in self.state.values():
            ks.starts = sorted(ks.sessions)
        heapq.heapify(self.timers)
