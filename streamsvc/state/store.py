"""Key-value state stores, one instance per (store name, partition).

Keys and values are bytes: they are what the changelog topic carries, so a store restored from its
changelog is byte-for-byte the store that wrote it. `InMemoryStore` is the default; `RocksDBStore`
(RocksDB through rocksdict, as Quix Streams uses) keeps state on disk for state larger than memory, and
with `streamsvc.state.local.LocalState` on top, survives restarts with a checkpoint. `SqliteStore` is
kept for callers of the earlier disk store.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class InMemoryStore:
    """A dict; the fastest choice while the state fits in memory."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._data.clear()


class SqliteStore:
    """State on disk. Writes are not fsynced: the changelog topic, not this file, is the source of truth,
    and the file is rebuilt from the changelog whenever the partition is assigned."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # never trust a leftover file: restore from the changelog
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self._path = path

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: bytes, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def delete(self, key: bytes) -> None:
        self._db.execute("DELETE FROM kv WHERE k = ?", (key,))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self._db.execute("SELECT k, v FROM kv ORDER BY k"):
            yield bytes(k), bytes(v)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._path.unlink(missing_ok=True)


_BLOCK_CACHE: Any = None


def _options(write_buffer: int = 4 << 20) -> Any:
    """Small memtables and one block cache shared by every store of the process: state on disk
    should not cost the memory it saves (RocksDB's defaults take 64 MB per memtable)."""
    global _BLOCK_CACHE
    from rocksdict import BlockBasedOptions, Cache, Options

    if _BLOCK_CACHE is None:
        _BLOCK_CACHE = Cache(16 << 20)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(write_buffer)
    opts.set_db_write_buffer_size(2 * write_buffer)
    opts.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(_BLOCK_CACHE)
    opts.set_block_based_table_factory(table)
    return opts


class RocksDBStore:
    """A RocksDB database (rocksdict, raw bytes) in directory `path`, with a `meta` column family for
    bookkeeping that must change atomically with the data (`write`). Writes go through the WAL without
    fsync: a crash loses at most the last writes, and `write` is atomic, so data and meta agree."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), _options(), column_families={"meta": _options(256 << 10)})
        self._meta = self._db.get_column_family("meta")
        self._meta_handle = self._db.get_column_family_handle("meta")

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def delete(self, key: bytes) -> None:
        self._db.delete(key)

    def items(self, from_key: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Entries in key order, from `from_key` on."""
        yield from self._db.items(from_key=from_key)

    def __len__(self) -> int:
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 (an Rdict, not a dict)

    def meta(self, key: bytes) -> bytes | None:
        value: bytes | None = self._meta.get(key)
        return value

    def write(self, changes: Mapping[bytes, bytes | None], meta: Mapping[bytes, bytes] | None = None) -> None:
        """Apply `changes` (None deletes) and set `meta` entries in one atomic batch."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for key, value in (meta or {}).items():
            batch.put(key, value, self._meta_handle)
        self._db.write(batch)

    def close(self) -> None:
        del self._meta, self._meta_handle
        self._db.close()

    def destroy(self) -> None:
        """Close and delete the database."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
