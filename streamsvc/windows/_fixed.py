"""Tumbling and hopping windows: a per-record engine (any aggregation) and a numpy engine (built-ins)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamsvc.windows import _codec
from streamsvc.windows._base import MISSING, Keys, PartitionEngine, RecordEngine, Times
from streamsvc.windows.aggregations import Aggregation, ColumnarAggregation, Values
from streamsvc.windows.results import WindowResult
from streamsvc.windows.spec import Emit, Hopping


class FixedRecords(RecordEngine):
    """State: window start -> {key: accumulator}."""

    def __init__(self, spec: Hopping, aggregation: Aggregation, emit: Emit, lateness_ms: int) -> None:
        super().__init__(aggregation, emit, spec.grace_ms, lateness_ms)
        self.size, self.adv = spec.size_ms, spec.advance_ms
        self.buckets: dict[int, dict[Hashable, Any]] = {}
        self.changed: dict[tuple[int, Hashable], None] = {}

    def record(self, key: Hashable, t: int, value: Any, wm: int) -> bool:
        size, adv, agg = self.size, self.adv, self.agg
        # Windows closed at `wm` are the ones with start + size + grace <= wm.
        first = max((t - size) // adv + 1, (wm - size - self.grace) // adv + 1)
        last = t // adv
        if first > last:
            return False
        for k in range(first, last + 1):
            start = k * adv
            bucket = self.buckets.get(start)
            if bucket is None:
                bucket = self.buckets[start] = {}
            acc = bucket.get(key, MISSING)
            if acc is MISSING:
                _codec.encode_key(key)  # reject unsupported key types before they reach state
                acc = agg.init()
            bucket[key] = agg.add(acc, value)
            self.dirty.add((_codec.WINDOW, key, start))
            if not self.final:
                self.changed[start, key] = None
        return True

    def batch_updates(self) -> list[WindowResult]:
        result, size = self.agg.result, self.size
        out = [WindowResult(key, s, s + size, result(self.buckets[s][key])) for s, key in self.changed]
        self.changed.clear()
        return out

    def close(self) -> list[WindowResult]:
        out: list[WindowResult] = []
        horizon = self.wm - self.size - self.grace
        closing = sorted(s for s in self.buckets if s <= horizon)
        for start in closing:
            bucket = self.buckets.pop(start)
            end = start + self.size
            for key, acc in bucket.items():
                self.dirty.add((_codec.WINDOW, key, start))
                if self.final:
                    out.append(WindowResult(key, start, end, self.agg.result(acc)))
        return out

    def entry_value(self, kind: bytes, key: Hashable, time: int) -> bytes | None:
        acc = self.buckets.get(time, {}).get(key, MISSING)
        return None if acc is MISSING else self.agg.dumps(acc)

    def load(self, entries: Mapping[bytes, bytes]) -> None:
        for k, v in entries.items():
            _, start, key = _codec.parse_entry_key(k)
            self.buckets.setdefault(start, {})[key] = self.agg.loads(v)


class FixedColumnar(PartitionEngine):
    """Numpy engine for built-in aggregations.

    State is a dense grid per aggregation column: one row ("slot") per open window start, one column
    per key code. A batch becomes (row, window) pairs, then one ``ufunc.at`` per column, which folds
    in record order, so results equal a one-record-at-a-time fold bit for bit. Key codes of keys no
    longer in any open window are reclaimed when they outnumber the live ones. Memory is open windows
    x live keys x (8 bytes per column + 3), whether or not every key is in every window.
    """

    def __init__(self, spec: Hopping, aggregation: ColumnarAggregation, emit: Emit, lateness_ms: int) -> None:
        super().__init__(aggregation, emit, spec.grace_ms, lateness_ms)
        self.cagg = aggregation
        self.size, self.adv = spec.size_ms, spec.advance_ms
        self.keys: list[Hashable] = []
        self.key_bytes: list[bytes] = []
        self.codes: dict[Hashable, int] = {}
        self.slot_of: dict[int, int] = {}
        self._alloc(4, 64)
        self.tombstones: list[bytes] = []

    def _alloc(self, nslots: int, cap: int) -> None:
        self.nslots, self.cap = nslots, cap
        self.cols = self.cagg.new_columns((nslots, cap))
        self.present = np.zeros((nslots, cap), dtype=np.bool_)
        self.dirty = np.zeros((nslots, cap), dtype=np.bool_)
        self.persisted = np.zeros((nslots, cap), dtype=np.bool_)
        self.slot_start = np.zeros(nslots, dtype=np.int64)
        self.free = list(range(nslots - 1, -1, -1))

    def _resize(self, nslots: int, cap: int) -> None:
        old = (self.cols, self.present, self.dirty, self.persisted, self.slot_start, self.free)
        rows, width = self.present.shape
        self._alloc(nslots, cap)
        for new, prev in zip(
            [*self.cols, self.present, self.dirty, self.persisted], [*old[0], *old[1:4]], strict=True
        ):
            new[:rows, :width] = prev
        self.slot_start[:rows] = old[4]
        self.free = list(range(nslots - 1, rows - 1, -1)) + old[5]

    def _code(self, key: Hashable) -> int:
        code = self.codes.get(key)
        if code is None:
            if isinstance(key, np.integer):
                key = int(key)
            kb = _codec.encode_key(key)
            code = self.codes[key] = len(self.keys)
            self.keys.append(key)
            self.key_bytes.append(kb)
        return code

    def _lookup(self, keys: Sequence[Hashable]) -> npt.NDArray[np.intp]:
        found = list(map(self.codes.get, keys))
        if None in found:
            found = [self._code(k) if c is None else c for c, k in zip(found, keys, strict=True)]
        return np.array(found, dtype=np.intp)

    def _factorize(self, keys: Keys, n: int) -> npt.NDArray[np.intp]:
        if isinstance(keys, np.ndarray) and keys.dtype.kind in "iuSU":
            uniq, inverse = np.unique(keys, return_inverse=True)
            codes = self._lookup(uniq.tolist())[inverse.reshape(-1)]
        else:
            codes = self._lookup(keys.tolist() if isinstance(keys, np.ndarray) else keys)
        if codes.shape != (n,):
            raise ValueError(f"{n} event times but {len(codes)} keys")
        if len(self.keys) > self.cap:
            self._resize(self.nslots, max(2 * self.cap, len(self.keys)))
        return codes

    def _slot(self, start: int) -> int:
        slot = self.slot_of.get(start)
        if slot is None:
            if not self.free:
                self._resize(2 * self.nslots, self.cap)
            slot = self.slot_of[start] = self.free.pop()
            self.slot_start[slot] = start
        return slot

    def _slots(self, starts: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
        lo, hi = int(starts.min()), int(starts.max())
        span = (hi - lo) // self.adv + 1
        if span <= 4 * len(starts) + 64:  # a lookup table beats sorting when the starts are dense
            rel = (starts - lo) // self.adv
            used = np.flatnonzero(np.bincount(rel, minlength=span))
            lut = np.zeros(span, dtype=np.intp)
            lut[used] = [self._slot(lo + u * self.adv) for u in used.tolist()]
            return lut[rel]
        uniq, inverse = np.unique(starts, return_inverse=True)
        return np.array([self._slot(s) for s in uniq.tolist()], dtype=np.intp)[inverse.reshape(-1)]

    def process(
        self, keys: Keys, times: Times, values: Values
    ) -> tuple[list[WindowResult], npt.NDArray[np.bool_]]:
        n = len(times)
        if n == 0:
            return [], np.zeros(0, dtype=np.bool_)
        codes = self._factorize(keys, n)
        vals = self.cagg.values_array(values, n)
        size, adv, reach = self.size, self.adv, self.size + self.grace
        running_max = np.maximum.accumulate(times)
        wm_rows = np.maximum(running_max - self.lateness, self.wm)
        last = times // adv
        late = last * adv + reach <= wm_rows
        if adv == size:
            ok = ~late
            rows = np.flatnonzero(ok)
            starts = last[ok] * adv
        else:
            first = (times - size) // adv + 1
            nwin = last - first + 1
            rows = np.repeat(np.arange(n), nwin)
            offsets = np.cumsum(nwin) - nwin - first
            starts = (np.arange(len(rows)) - np.repeat(offsets, nwin)) * adv
            is_open = starts + reach > wm_rows[rows]
            rows, starts = rows[is_open], starts[is_open]
        results: list[WindowResult] = []
        if len(rows):
            slots = self._slots(starts)
            cells = slots * self.cap + codes[rows]
            flat = [c.reshape(-1) for c in self.cols]
            self.cagg.update(flat, cells, None if vals is None else vals[rows])
            self.present.reshape(-1)[cells] = True
            self.dirty.reshape(-1)[cells] = True
            if not self.final:
                results = self._results(np.unique(cells))
        self._set_time(
            int(running_max[-1]) if self.max_t is None else max(self.max_t, int(running_max[-1])),
            int(wm_rows[-1]),
        )
        results += self.close()
        return results, late

    def _results(self, cells: npt.NDArray[np.intp]) -> list[WindowResult]:
        values = self.cagg.results([c.reshape(-1) for c in self.cols], cells)
        starts = self.slot_start[cells // self.cap].tolist()
        keys, size = self.keys, self.size
        return [
            WindowResult(keys[c], s, s + size, v)
            for c, s, v in zip((cells % self.cap).tolist(), starts, values, strict=True)
        ]

    def close(self) -> list[WindowResult]:
        horizon = self.wm - self.size - self.grace
        closing = sorted(s for s in self.slot_of if s <= horizon)
        out: list[WindowResult] = []
        for start in closing:
            slot = self.slot_of.pop(start)
            codes = np.flatnonzero(self.present[slot])
            if self.final:
                out += self._results(slot * self.cap + codes)
            prefix, kb = _codec.entry_key(_codec.WINDOW, start, b""), self.key_bytes
            self.tombstones += [prefix + kb[c] for c in np.flatnonzero(self.persisted[slot]).tolist()]
            for col, (_, fill) in zip(self.cols, self.cagg.columns, strict=True):
                col[slot] = fill
            self.present[slot] = self.dirty[slot] = self.persisted[slot] = False
            self.free.append(slot)
        if closing and len(self.keys) > 1024:
            self._compact()
        return out

    def _compact(self) -> None:
        live = np.flatnonzero(self.present[:, : len(self.keys)].any(axis=0))
        if 2 * len(live) >= len(self.keys):
            return
        old = (self.cols, self.present, self.dirty, self.persisted, self.slot_start, self.free)
        keys, key_bytes = self.keys, self.key_bytes
        self._alloc(self.nslots, max(64, 2 * len(live)))
        for new, prev in zip(
            [*self.cols, self.present, self.dirty, self.persisted], [*old[0], *old[1:4]], strict=True
        ):
            new[:, : len(live)] = prev[:, live]
        self.slot_start[:], self.free = old[4], old[5]
        self.keys = [keys[c] for c in live.tolist()]
        self.key_bytes = [key_bytes[c] for c in live.tolist()]
        self.codes = {k: i for i, k in enumerate(self.keys)}

    def state_changes(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = dict.fromkeys(self.tombstones)
        self.tombstones = []
        cells = np.flatnonzero(self.dirty)
        if len(cells):
            encoded = self.cagg.encode([c.reshape(-1) for c in self.cols], cells)
            slots, codes = np.divmod(cells, self.cap)
            # `cells` is sorted, so slot-major: one entry-key prefix per slot.
            bounds = np.flatnonzero(np.diff(slots)) + 1
            kb, codes_list = self.key_bytes, codes.tolist()
            keys: list[bytes] = []
            for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(cells)], strict=True):
                prefix = _codec.entry_key(_codec.WINDOW, int(self.slot_start[slots[lo]]), b"")
                keys += [prefix + kb[c] for c in codes_list[lo:hi]]
            out.update(zip(keys, encoded, strict=True))
            self.persisted.reshape(-1)[cells] = True
            self.dirty[:] = False
        return out

    def load(self, entries: Mapping[bytes, bytes]) -> None:
        parsed = []
        for k, v in entries.items():
            _, start, key = _codec.parse_entry_key(k)
            parsed.append((self._slot(start), self._code(key), self.cagg.loads(v)))
        if len(self.keys) > self.cap:
            self._resize(self.nslots, len(self.keys))
        flat = [c.reshape(-1) for c in self.cols]
        for slot, code, acc in parsed:
            cell = slot * self.cap + code
            self.cagg.store(flat, cell, acc)
            self.present.reshape(-1)[cell] = self.persisted.reshape(-1)[cell] = True
