"""Tables from Debezium CDC topics: the latest row per primary key.

A table is keyed by the CDC record's Kafka key bytes (Debezium's primary-key struct, as serialized).
``c``/``u``/``r`` events upsert the ``after`` image; ``d``, a tombstone (Kafka null value, or a
``ChangeRecord`` with op ``tombstone``) and a ``None`` change remove the key; ``t`` (truncate) and ``m``
(logical-decoding message) are ignored: they carry no row key.

Exactly-once follows `WindowedAggregation`: after each batch the runtime writes `changes(partition)`
(the primary key -> the orjson-encoded row, None = tombstone) to the partition's compacted changelog in
the same transaction as the output and offsets; on assignment it replays that changelog into `restore`.
Rows are encoded when applied, so a row orjson cannot encode fails on its own record, before any state
changes; rows read back by `restore` equal the originals for JSON-decoded rows (Debezium JSON).

Rows handed out by `GlobalTable.get` are the table's own objects: treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

import orjson

from streamsvc.errors import MalformedPayloadError
from streamsvc.joins._common import Row
from streamsvc.serde.debezium import ChangeRecord
from streamsvc.state.store import InMemoryStore, KeyValueStore

__all__ = ["CdcTable", "GlobalTable", "Row", "Table"]

_UPSERT_OPS = frozenset({"c", "u", "r"})
_IGNORED_OPS = frozenset({"t", "m"})


class Table(Protocol):
    """What a stream-table join needs from a table."""

    @property
    def name(self) -> str: ...

    @property
    def partitioned(self) -> bool:
        """True if lookups are per partition (the stream must be co-partitioned with the table)."""
        ...

    def get(self, partition: int, key: bytes) -> Row | None: ...


def _ignored(table: str, key: bytes, change: ChangeRecord | None) -> bool:
    if not isinstance(key, bytes):
        raise TypeError(f"table {table}: CDC record keys must be bytes (the primary key), got {key!r}")
    return change is not None and change.op in _IGNORED_OPS


def _upsert(table: str, change: ChangeRecord | None) -> tuple[Row, bytes] | None:
    """What a change that is not ignored does: ``(row, encoded row)`` to upsert, None to delete."""
    if change is None or change.is_delete:
        return None
    if change.op not in _UPSERT_OPS:
        raise MalformedPayloadError(f"table {table}: unknown change op {change.op!r}")
    row = change.after
    if row is None:
        raise MalformedPayloadError(f"table {table}: {change.op!r} event without an `after` row")
    return row, orjson.dumps(row)


def _live(entries: Iterable[tuple[bytes, bytes | None]]) -> dict[bytes, Row]:
    """Compact changelog entries (log order, last per key wins, None deletes) to the live rows."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in entries:
        latest[key] = value
    return {k: orjson.loads(v) for k, v in latest.items() if v is not None}


class CdcTable:
    """The latest row per primary key of a co-partitioned CDC topic, with per-partition state.

    Rows live in one `KeyValueStore` per partition (primary key -> orjson row): `InMemoryStore` by
    default, or what `store_factory(partition)` returns: with `store="disk"` a `LocalState` (RocksDB with
    a checkpoint), which the runtime restores from the changelog's tail only (`restore_local`).
    """

    partitioned = True

    def __init__(self, name: str, store_factory: Callable[[int], KeyValueStore] | None = None) -> None:
        self._name = name
        self._factory: Callable[[int], KeyValueStore] = store_factory or (lambda _p: InMemoryStore())
        self._stores: dict[int, KeyValueStore] = {}
        self._dirty: dict[int, dict[bytes, bytes | None]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def partitions(self) -> frozenset[int]:
        """Partitions with state (applied or restored, not dropped)."""
        return frozenset(self._stores)

    def _store(self, partition: int) -> KeyValueStore:
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = self._factory(partition)
        return store

    def apply(self, partition: int, key: bytes, change: ChangeRecord | None) -> None:
        """Apply one change event of `partition`, records in offset order."""
        if _ignored(self._name, key, change):
            return
        effect = _upsert(self._name, change)
        store = self._store(partition)
        dirty = self._dirty.setdefault(partition, {})
        if effect is None:
            if store.get(key) is not None:
                store.delete(key)
                dirty[key] = None
        else:
            store.put(key, effect[1])
            dirty[key] = effect[1]

    def get(self, partition: int, key: bytes) -> Row | None:
        """The current row of `key` in `partition` (a fresh dict), None if there is none."""
        store = self._stores.get(partition)
        raw = None if store is None else store.get(key)
        return None if raw is None else dict(orjson.loads(raw))

    def rows(self, partition: int) -> Mapping[bytes, Row]:
        """A read-only snapshot of the partition's rows."""
        store = self._stores.get(partition)
        return MappingProxyType({} if store is None else {k: orjson.loads(v) for k, v in store.items()})

    def changes(self, partition: int) -> dict[bytes, bytes | None]:
        """Changelog entries changed since the last call (None: delete)."""
        return self._dirty.pop(partition, {})

    def restore(self, partition: int, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Replace the partition's state with the one its changelog describes (entries in log order)."""
        self.drop(partition)
        store = self._store(partition)
        latest: dict[bytes, bytes | None] = {}
        for key, value in entries:
            latest[key] = value
        for key, value in latest.items():
            if value is not None:
                store.put(key, value)

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's state (its changelog keeps it)."""
        store = self._stores.pop(partition, None)
        if store is not None:
            store.close()
        self._dirty.pop(partition, None)

    def restore_local(self, partition: int) -> None:
        """Take the partition's rows as the store `store_factory` gives holds them (a local store that
        is already restored and checkpointed), without copying them."""
        self._dirty.pop(partition, None)
        self._stores[partition] = self._factory(partition)


class GlobalTable:
    """The latest row per primary key over *all* partitions of a CDC topic (a replicated table).

    Every instance is fed every partition of the table topic, so lookups ignore the stream's partition
    and the stream need not be co-partitioned with the table. `partition` in `apply`, `changes`,
    `restore`, `drop` and `rows` is the table topic's partition: each row belongs to the partition whose
    event last wrote it, so the per-partition changelog API works as for `CdcTable` (or the runtime may
    bootstrap by applying the whole, compacted, table topic instead).
    """

    partitioned = False

    def __init__(self, name: str) -> None:
        self._name = name
        self._rows: dict[bytes, Row] = {}
        self._owner: dict[bytes, int] = {}
        self._dirty: dict[int, dict[bytes, bytes | None]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def partitions(self) -> frozenset[int]:
        """Table partitions that own at least one row."""
        return frozenset(self._owner.values())

    def discard_changes(self) -> None:
        """Forget pending changelog entries (when the table topic itself is the durable copy)."""
        self._dirty.clear()

    def apply(self, partition: int, key: bytes, change: ChangeRecord | None) -> None:
        """Apply one change event read from table partition `partition`."""
        if _ignored(self._name, key, change):
            return
        effect = _upsert(self._name, change)
        owner = self._owner.get(key)
        if effect is None:
            if owner is not None:
                del self._rows[key], self._owner[key]
                self._dirty.setdefault(owner, {})[key] = None
            return
        if owner is not None and owner != partition:
            # The key moved partitions: the old partition's changelog must not bring it back.
            self._dirty.setdefault(owner, {})[key] = None
        self._rows[key], encoded = effect
        self._owner[key] = partition
        self._dirty.setdefault(partition, {})[key] = encoded

    def get(self, partition: int, key: bytes) -> Row | None:
        """The current row of `key`, whatever the partition (the argument is ignored)."""
        return self._rows.get(key)

    def rows(self, partition: int | None = None) -> Mapping[bytes, Row]:
        """All rows (a read-only view), or a copy of those one table partition owns."""
        if partition is None:
            return MappingProxyType(self._rows)
        return {k: self._rows[k] for k, p in self._owner.items() if p == partition}

    def changes(self, partition: int) -> dict[bytes, bytes | None]:
        """Changelog entries of table partition `partition` changed since the last call (None: delete)."""
        return self._dirty.pop(partition, {})

    def restore(self, partition: int, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Replace the rows of table partition `partition` with those its changelog describes."""
        self.drop(partition)
        for key, row in _live(entries).items():
            self._rows[key] = row
            self._owner[key] = partition

    def drop(self, partition: int) -> None:
        """Forget the rows of table partition `partition`."""
        for key in [k for k, p in self._owner.items() if p == partition]:
            del self._rows[key], self._owner[key]
        self._dirty.pop(partition, None)
