"""Key-value state stores, one instance per (store name, partition).

Keys and values are bytes: they are what the changelog topic carries, so a store restored from its
changelog is byte-for-byte the store that wrote it. `InMemoryStore` is the default; `SqliteStore` keeps
state on disk (one SQLite file per store partition) for state larger than memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


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
