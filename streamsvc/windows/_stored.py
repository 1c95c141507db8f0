"""Tumbling and hopping windows whose state lives in a key-value store (RocksDB) instead of memory.

Same semantics as `FixedRecords` (the per-record engine; tests check both give the same results and the
same live changelog entries), but the state *is* the store: one entry per (window start, key) in the
changelog's own layout, ``entry_key(WINDOW, start, key) -> aggregation.dumps(acc)``, plus the meta
entry. Memory holds only the open window starts and the current batch's accumulators, so a partition
with millions of keys stays small. The store is a `LocalState`: reads see this commit interval's writes;
the database only gets them once the transaction that carried them to the changelog has committed.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from streamsvc.errors import RecordFoldError
from streamsvc.state.local import LocalState
from streamsvc.windows import _codec
from streamsvc.windows._base import MISSING, NO_WATERMARK, Keys, PartitionEngine, Times
from streamsvc.windows.aggregations import Aggregation
from streamsvc.windows.results import WindowResult
from streamsvc.windows.spec import Emit, Hopping

_TIME = struct.Struct(">q")
_HEAD = len(_codec.WINDOW) + _TIME.size


class FixedStored(PartitionEngine):
    """State: the store's entries; in memory, the starts of the windows that have entries."""

    resident = True

    def __init__(
        self, spec: Hopping, aggregation: Aggregation, emit: Emit, lateness_ms: int, store: LocalState
    ) -> None:
        super().__init__(aggregation, emit, spec.grace_ms, lateness_ms)
        self.size, self.adv = spec.size_ms, spec.advance_ms
        self.kv = store
        self.starts: set[int] = set()
        self.dirty: dict[bytes, bytes | None] = {}
        self.reload()

    def reload(self) -> None:
        """Take the committed state from the store (after a restore or an abort)."""
        self.kv.discard()
        self.dirty = {}
        self.max_t, self.wm, self.meta_dirty = None, NO_WATERMARK, False
        meta = self.kv.get(_codec.META)
        if meta is not None:
            self.max_t, wm = _codec.load_meta(meta)
            self.wm = NO_WATERMARK if wm is None else wm
        self.starts = set()
        key = _codec.WINDOW
        while True:  # one seek per open window start
            found = next(iter(self.kv.db.items(key)), None)
            if found is None or not found[0].startswith(_codec.WINDOW):
                break
            start = _TIME.unpack_from(found[0], len(_codec.WINDOW))[0]
            self.starts.add(start)
            key = _codec.WINDOW + _TIME.pack(start + 1)

    def process(
        self, keys: Keys, times: Times, values: Any
    ) -> tuple[list[WindowResult], npt.NDArray[np.bool_]]:
        n = len(times)
        vals = self.agg.prepare(values, n)
        key_list = keys.tolist() if isinstance(keys, np.ndarray) else keys
        if len(key_list) != n:
            raise ValueError(f"{n} event times but {len(key_list)} keys")
        late = np.zeros(n, dtype=np.bool_)
        lateness, wm = self.lateness, self.wm
        max_t = NO_WATERMARK if self.max_t is None else self.max_t
        batch: dict[bytes, Any] = {}  # entry key -> accumulator, in first-touch order
        record = self._record
        for i, (key, t, v) in enumerate(zip(key_list, times.tolist(), vals, strict=True)):
            if t > max_t:
                max_t = t
                if t - lateness > wm:
                    wm = t - lateness
            try:
                if not record(key, t, v, wm, batch):
                    late[i] = True
            except Exception as exc:  # a user aggregation or an unusable key: name the record
                raise RecordFoldError(i, exc) from exc
        dumps, put, dirty = self.agg.dumps, self.kv.put, self.dirty
        for ek, acc in batch.items():
            data = dumps(acc)
            put(ek, data)
            dirty[ek] = data
        if n:
            self._set_time(max_t, wm)
        results = [] if self.final else self._updates(batch)
        results += self.close()
        return results, late

    def _record(self, key: Hashable, t: int, value: Any, wm: int, batch: dict[bytes, Any]) -> bool:
        size, adv, agg = self.size, self.adv, self.agg
        first = max((t - size) // adv + 1, (wm - size - self.grace) // adv + 1)
        last = t // adv
        if first > last:
            return False
        kb = _codec.encode_key(key)
        for k in range(first, last + 1):
            start = k * adv
            ek = _codec.entry_key(_codec.WINDOW, start, kb)
            acc = batch.get(ek, MISSING)
            if acc is MISSING:
                raw = self.kv.get(ek)
                acc = agg.init() if raw is None else agg.loads(raw)
                self.starts.add(start)
            batch[ek] = agg.add(acc, value)
        return True

    def _updates(self, batch: Mapping[bytes, Any]) -> list[WindowResult]:
        result, size = self.agg.result, self.size
        out = []
        for ek, acc in batch.items():
            start = _TIME.unpack_from(ek, len(_codec.WINDOW))[0]
            out.append(WindowResult(_codec.decode_key(ek[_HEAD:]), start, start + size, result(acc)))
        return out

    def close(self) -> list[WindowResult]:
        out: list[WindowResult] = []
        horizon = self.wm - self.size - self.grace
        for start in sorted(s for s in self.starts if s <= horizon):
            self.starts.discard(start)
            end, prefix = start + self.size, _codec.entry_key(_codec.WINDOW, start, b"")
            for ek, raw in self.kv.scan(prefix):
                if self.final:
                    acc = self.agg.loads(raw)
                    out.append(WindowResult(_codec.decode_key(ek[_HEAD:]), start, end, self.agg.result(acc)))
                self.kv.delete(ek)
                self.dirty[ek] = None
        return out

    def state_changes(self) -> dict[bytes, bytes | None]:
        out, self.dirty = self.dirty, {}
        return out

    def changes(self) -> dict[bytes, bytes | None]:
        out = super().changes()
        meta = out.get(_codec.META)
        if meta is not None:
            self.kv.put(_codec.META, meta)
        return out

    def load(self, entries: Mapping[bytes, bytes]) -> None:
        """Replace the store's content by live changelog entries (meta excluded; `restore` sets it)."""
        self.kv.discard()
        for ek, _ in list(self.kv.scan(b"")):
            self.kv.delete(ek)
        for ek, raw in entries.items():
            self.kv.put(ek, raw)
            self.starts.add(_TIME.unpack_from(ek, len(_codec.WINDOW))[0])
        self.dirty = dict(self.kv.pending)
