"""State stores and their changelog topics (BRIEF §3.6)."""

from streamsvc.state.store import InMemoryStore, KeyValueStore, SqliteStore

__all__ = ["InMemoryStore", "KeyValueStore", "SqliteStore"]
