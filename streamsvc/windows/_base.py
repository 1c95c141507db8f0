"""Per-partition window state shared by the engines: the partition's stream time and watermark."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamsvc.errors import RecordFoldError
from streamsvc.windows import _codec
from streamsvc.windows.aggregations import Aggregation, Values
from streamsvc.windows.results import WindowResult
from streamsvc.windows.spec import Emit

NO_WATERMARK = -(2**62)
"""Below any real watermark, and far enough from int64's minimum that window arithmetic cannot wrap."""

Keys = Sequence[Hashable] | npt.NDArray[Any]
Times = npt.NDArray[np.int64]


class _Missing:
    pass


MISSING: Any = _Missing()


class PartitionEngine(ABC):
    """One partition's window state. The watermark only moves forward: ``max(previous, t - lateness)``
    after each record at ``t``, or by `advance`."""

    def __init__(self, aggregation: Aggregation, emit: Emit, grace_ms: int, lateness_ms: int) -> None:
        self.agg = aggregation
        self.final = emit == "final"
        self.grace = grace_ms
        self.lateness = lateness_ms
        self.max_t: int | None = None
        self.wm = NO_WATERMARK
        self.meta_dirty = False

    @property
    def watermark(self) -> int | None:
        return None if self.wm == NO_WATERMARK else self.wm

    def _set_time(self, max_t: int | None, wm: int) -> None:
        if max_t != self.max_t or wm != self.wm:
            self.max_t, self.wm, self.meta_dirty = max_t, wm, True

    @abstractmethod
    def process(
        self, keys: Keys, times: Times, values: Values
    ) -> tuple[list[WindowResult], npt.NDArray[np.bool_]]:
        """Fold a batch (records in offset order) into state; (results, late mask)."""

    def advance(self, watermark: int) -> list[WindowResult]:
        """Raise the watermark to at least `watermark` and close what that closes."""
        if watermark > self.wm:
            self._set_time(self.max_t, watermark)
        return self.close()

    @abstractmethod
    def close(self) -> list[WindowResult]:
        """Purge windows closed by the current watermark; in final mode, return them."""

    @abstractmethod
    def state_changes(self) -> dict[bytes, bytes | None]:
        """Changed non-meta entries since the last call."""

    @abstractmethod
    def load(self, entries: Mapping[bytes, bytes]) -> None:
        """Rebuild state from live non-meta changelog entries (called on a fresh engine)."""

    def changes(self) -> dict[bytes, bytes | None]:
        out = self.state_changes()
        if self.meta_dirty:
            out[_codec.META] = _codec.dump_meta(self.max_t, self.watermark)
            self.meta_dirty = False
        return out

    def restore(self, entries: Mapping[bytes, bytes]) -> None:
        meta = entries.get(_codec.META)
        if meta is not None:
            self.max_t, wm = _codec.load_meta(meta)
            self.wm = NO_WATERMARK if wm is None else wm
        self.load({k: v for k, v in entries.items() if k != _codec.META})


class RecordEngine(PartitionEngine):
    """Engines that fold one record at a time (any aggregation), tracking dirty entries as
    (entry kind, key, time)."""

    def __init__(self, aggregation: Aggregation, emit: Emit, grace_ms: int, lateness_ms: int) -> None:
        super().__init__(aggregation, emit, grace_ms, lateness_ms)
        self.dirty: set[tuple[bytes, Hashable, int]] = set()
        self.persisted: set[tuple[bytes, Hashable, int]] = set()  # entries in the changelog

    @abstractmethod
    def record(self, key: Hashable, t: int, value: Any, wm: int) -> bool:
        """Fold one record under watermark `wm`; False if it is late."""

    @abstractmethod
    def batch_updates(self) -> list[WindowResult]:
        """Update mode: the windows changed since the last call, with their current values."""

    @abstractmethod
    def entry_value(self, kind: bytes, key: Hashable, time: int) -> bytes | None:
        """Serialized current state of one entry, None if it no longer exists."""

    def process(
        self, keys: Keys, times: Times, values: Values
    ) -> tuple[list[WindowResult], npt.NDArray[np.bool_]]:
        n = len(times)
        vals = self.agg.prepare(values, n)
        key_list = keys.tolist() if isinstance(keys, np.ndarray) else keys
        if len(key_list) != n:
            raise ValueError(f"{n} event times but {len(key_list)} keys")
        late = np.zeros(n, dtype=np.bool_)
        lateness, wm = self.lateness, self.wm
        max_t = NO_WATERMARK if self.max_t is None else self.max_t
        record = self.record
        for i, (key, t, v) in enumerate(zip(key_list, times.tolist(), vals, strict=True)):
            if t > max_t:
                max_t = t
                if t - lateness > wm:
                    wm = t - lateness
            try:
                if not record(key, t, v, wm):
                    late[i] = True
            except Exception as exc:  # a user aggregation or an unusable key: name the record
                raise RecordFoldError(i, exc) from exc
        if n:
            self._set_time(max_t, wm)
        results = [] if self.final else self.batch_updates()
        results += self.close()
        return results, late

    def state_changes(self) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for entry in self.dirty:
            kind, key, time = entry
            value = self.entry_value(kind, key, time)
            if value is not None:
                self.persisted.add(entry)
            elif entry in self.persisted:
                self.persisted.discard(entry)
            else:
                continue  # created and deleted since the last call: nothing to delete
            out[_codec.entry_key(kind, time, _codec.encode_key(key))] = value
        self.dirty.clear()
        return out

    def restore(self, entries: Mapping[bytes, bytes]) -> None:
        super().restore(entries)
        for k in entries:
            if k != _codec.META:
                kind, time, key = _codec.parse_entry_key(k)
                self.persisted.add((kind, key, time))
