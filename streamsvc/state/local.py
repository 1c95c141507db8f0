"""Local state with a checkpoint: a store partition's committed changelog entries on disk, so that a
restart or a reassignment restores only the changelog's tail (BRIEF §3.6).

`LocalState` is a `KeyValueStore` over a `RocksDBStore` holding exactly the entries of the store
partition's changelog as of the last commit, plus a checkpoint in the same atomic write: the changelog
offset those entries reach and the source offset they reflect. Writes between commits stay in memory
(`pending`, read through), so the database never holds an uncommitted update: an aborted transaction
discards them, and a crash (even kill -9) leaves the last committed state and its checkpoint.

Restore of a partition (`StreamTask.restore`): with a checkpoint whose source offset is at most the
group's committed offset, read the changelog from the checkpointed offset only (entries tagged past the
committed offset are skipped, as in a full restore), fold them in and checkpoint again; otherwise wipe
and read it all. An offset reset to before the checkpoint therefore rebuilds the state from scratch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamsvc.state.store import RocksDBStore

_CHECKPOINT = b"checkpoint"
_OFFSETS = struct.Struct(">qq")
_MISSING: Any = object()


@dataclass(frozen=True)
class Checkpoint:
    changelog_offset: int
    """The changelog offset the local entries reach: restore reads from here on."""
    source_offset: int
    """The next source offset the entries reflect (the committed position at checkpoint time)."""


class LocalState:
    """One store partition's committed state on disk, with writes since the last commit in memory.
    `cache_entries` committed values are also kept in memory (read cache)."""

    def __init__(self, path: Path, cache_entries: int = 20_000) -> None:
        self.path = path
        self.db = RocksDBStore(path)
        self.pending: dict[bytes, bytes | None] = {}
        self.cache: dict[bytes, bytes | None] = {}
        self.cache_entries = cache_entries
        self.closed = False

    # ---- KeyValueStore ------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key, _MISSING)
        if value is _MISSING:
            value = self.cache.get(key, _MISSING)
            if value is _MISSING:
                value = self.db.get(key)
                self._cache(key, value)
        return value  # type: ignore[no-any-return]

    def put(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def delete(self, key: bytes) -> None:
        self.pending[key] = None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Live entries (committed, overlaid with the pending writes), in key order of the database
        first, then pending additions."""
        return self.scan(b"")

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Live entries whose key starts with `prefix` (pending writes included). Writes made while
        iterating are not seen by it."""
        pending = {k: v for k, v in self.pending.items() if k.startswith(prefix)}
        for key, value in self.db.items(prefix):
            if not key.startswith(prefix):
                break
            if key not in pending:
                yield key, value
        for key, maybe in pending.items():
            if maybe is not None:
                yield key, maybe

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending.clear()
        self.cache.clear()
        self.db.close()

    # ---- commit protocol ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        raw = self.db.meta(_CHECKPOINT)
        return None if raw is None else Checkpoint(*_OFFSETS.unpack(raw))

    def commit(
        self, changes: Mapping[bytes, bytes | None], changelog_offset: int | None, source_offset: int
    ) -> None:
        """Make `changes` (the entries just committed to the changelog) the local committed state, with
        the checkpoint (`changelog_offset` None: keep the previous one, never move it past the log)."""
        if changelog_offset is None:
            cp = self.checkpoint()
            changelog_offset = 0 if cp is None else cp.changelog_offset
        self.db.write(changes, {_CHECKPOINT: _OFFSETS.pack(changelog_offset, source_offset)})
        self.pending.clear()
        for key, value in changes.items():
            self._cache(key, value, replace=True)

    def discard(self) -> None:
        """Forget the writes since the last commit (an aborted transaction)."""
        self.pending.clear()

    def wipe(self) -> None:
        """Delete everything, checkpoint included (the state is rebuilt from the whole changelog)."""
        self.db.destroy()
        self.db = RocksDBStore(self.path)
        self.pending.clear()
        self.cache.clear()

    def load(
        self, entries: Iterable[tuple[bytes, bytes | None]], changelog_offset: int, source_offset: int
    ) -> int:
        """Fold changelog `entries` (log order) into the committed state in batches; returns how many."""
        batch: dict[bytes, bytes | None] = {}
        n = 0
        for key, value in entries:
            batch[key] = value
            n += 1
            if len(batch) >= 50_000:
                self.db.write(batch)
                batch = {}
        self.commit(batch, changelog_offset, source_offset)
        self.cache.clear()
        return n

    def _cache(self, key: bytes, value: bytes | None, replace: bool = False) -> None:
        cache = self.cache
        if replace and key not in cache:
            return
        cache[key] = value
        if len(cache) > self.cache_entries:
            for old in list(cache)[: len(cache) // 4]:
                del cache[old]


class LocalStates:
    """The open `LocalState`s of one agent instance: `<state_dir>/<app>/<instance>/<agent>/<store>/<p>`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._open: dict[tuple[str, int], LocalState] = {}

    def open(self, store: str, partition: int) -> LocalState:
        state = self._open.get((store, partition))
        if state is None or state.closed:
            state = self._open[(store, partition)] = LocalState(self.base / store / str(partition))
        return state

    def get(self, store: str, partition: int) -> LocalState | None:
        return self._open.get((store, partition))

    def close(self, store: str, partition: int) -> None:
        state = self._open.pop((store, partition), None)
        if state is not None:
            state.close()

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(*key)
