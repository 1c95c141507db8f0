"""Sliding windows (Kafka Streams semantics, see `Sliding`), one record at a time."""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Mapping
from typing import Any

from streamsvc.windows import _codec
from streamsvc.windows._base import MISSING, RecordEngine
from streamsvc.windows.aggregations import Aggregation
from streamsvc.windows.results import WindowResult
from streamsvc.windows.spec import Emit, Sliding


class _Key:
    """One key's state: per event time the accumulator of its records ("partials"), and the windows."""

    __slots__ = ("partials", "times", "windows")

    def __init__(self) -> None:
        self.times: list[int] = []  # sorted keys of `partials`
        self.partials: dict[int, Any] = {}
        self.windows: dict[int, Any] = {}  # start -> accumulator


class SlidingRecords(RecordEngine):
    """Windows are inclusive ``[s, s + d]``, i.e. ``[s, s + d + 1)``. A new window's accumulator is
    merged from the partials in it; an existing one gets `add`. A record's partial is kept until no
    open window can still contain it or be created from it: ``t + d + 2 + grace <= wm``."""

    def __init__(self, spec: Sliding, aggregation: Aggregation, emit: Emit, lateness_ms: int) -> None:
        super().__init__(aggregation, emit, spec.grace_ms, lateness_ms)
        self.d = spec.size_ms
        self.state: dict[Hashable, _Key] = {}
        self.closing: list[tuple[int, int, Hashable, int]] = []  # (close at, seq, key, start)
        self.purging: list[tuple[int, int, Hashable, int]] = []  # (purge at, seq, key, time)
        self.seq = itertools.count()
        self.changed: dict[tuple[Hashable, int], None] = {}

    def record(self, key: Hashable, t: int, value: Any, wm: int) -> bool:
        d, reach = self.d, self.d + 1 + self.grace  # window [s, s + d] is open iff s + reach > wm
        if t + reach <= wm:
            return False
        ks = self.state.get(key)
        if ks is None:
            _codec.encode_key(key)
            ks = self.state[key] = _Key()
        times, agg = ks.times, self.agg
        partial = ks.partials.get(t, MISSING)
        if partial is MISSING:
            insort(times, t)
            ks.partials[t] = agg.add(agg.init(), value)
            heapq.heappush(self.purging, (t + reach + 1, next(self.seq), key, t))
        else:
            ks.partials[t] = agg.add(partial, value)
        self.dirty.add((_codec.PARTIAL, key, t))
        # Windows containing t: left windows of times u in [t, t + d], right windows of u in [t - d - 1, t).
        starts = {
            u - d if u >= t else u + 1
            for u in times[bisect_left(times, t - d - 1) : bisect_right(times, t + d)]
        }
        for s in starts:
            if s + reach > wm:
                acc = ks.windows.get(s, MISSING)
                if acc is MISSING:
                    self._create(key, ks, s)
                else:
                    ks.windows[s] = agg.add(acc, value)
                    self._touch(key, s)
        # t's own right window, if a later record already falls in it.
        s = t + 1
        if s + reach > wm and s not in ks.windows:
            i = bisect_right(times, t)
            if i < len(times) and times[i] <= t + 1 + d:
                self._create(key, ks, s)
        return True

    def _create(self, key: Hashable, ks: _Key, start: int) -> None:
        times, partials, merge = ks.times, ks.partials, self.agg.merge
        span = times[bisect_left(times, start) : bisect_right(times, start + self.d)]
        acc = partials[span[0]]
        for u in span[1:]:
            acc = merge(acc, partials[u])
        ks.windows[start] = acc
        heapq.heappush(self.closing, (start + self.d + 1 + self.grace, next(self.seq), key, start))
        self._touch(key, start)

    def _touch(self, key: Hashable, start: int) -> None:
        self.dirty.add((_codec.WINDOW, key, start))
        if not self.final:
            self.changed[key, start] = None

    def batch_updates(self) -> list[WindowResult]:
        result, span = self.agg.result, self.d + 1
        out = [WindowResult(key, s, s + span, result(self.state[key].windows[s])) for key, s in self.changed]
        self.changed.clear()
        return out

    def close(self) -> list[WindowResult]:
        out: list[WindowResult] = []
        wm, closing, purging = self.wm, self.closing, self.purging
        while closing and closing[0][0] <= wm:
            _, _, key, start = heapq.heappop(closing)
            acc = self.state[key].windows.pop(start)
            self.dirty.add((_codec.WINDOW, key, start))
            if self.final:
                out.append(WindowResult(key, start, start + self.d + 1, self.agg.result(acc)))
        while purging and purging[0][0] <= wm:
            _, _, key, t = heapq.heappop(purging)
            ks = self.state[key]
            del ks.partials[t]
            del ks.times[bisect_left(ks.times, t)]
            self.dirty.add((_codec.PARTIAL, key, t))
            if not ks.partials:  # its windows closed before its partials expired
                del self.state[key]
        return out

    def entry_value(self, kind: bytes, key: Hashable, time: int) -> bytes | None:
        ks = self.state.get(key)
        if ks is None:
            return None
        acc = (ks.partials if kind == _codec.PARTIAL else ks.windows).get(time, MISSING)
        return None if acc is MISSING else self.agg.dumps(acc)

    def load(self, entries: Mapping[bytes, bytes]) -> None:
        reach = self.d + 1 + self.grace
        for k, v in entries.items():
            kind, time, key = _codec.parse_entry_key(k)
            ks = self.state.get(key)
            if ks is None:
                ks = self.state[key] = _Key()
            if kind == _codec.PARTIAL:
                ks.partials[time] = self.agg.loads(v)
                self.purging.append((time + reach + 1, next(self.seq), key, time))
            else:
                ks.windows[time] = self.agg.loads(v)
                self.closing.append((time + reach, next(self.seq), key, time))
        for ks in self.state.values():
            ks.times = sorted(ks.partials)
        heapq.heapify(self.closing)
        heapq.heapify(self.purging)
