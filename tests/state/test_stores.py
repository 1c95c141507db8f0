"""State stores and changelog round trips (the changelog part against the real broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamsvc.runtime.topics import ensure_topics
from streamsvc.state import InMemoryStore, SqliteStore
from streamsvc.state.changelog import CHANGELOG_CONFIG, read_changelog, write_changes


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = InMemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s" / "0.db")
    yield s
    s.close()


def test_store_contract(store) -> None:  # type: ignore[no-untyped-def]
    assert store.get(b"a") is None and len(store) == 0
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.put(b"a", b"3")
    store.delete(b"b")
    store.delete(b"missing")
    assert store.get(b"a") == b"3" and store.get(b"b") is None
    assert sorted(store.items()) == [(b"a", b"3")]
    assert len(store) == 1


def test_sqlite_store_never_trusts_a_leftover_file(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "x.db")
    first.put(b"k", b"v")
    first._db.close()  # a crash: the file stays behind
    second = SqliteStore(tmp_path / "x.db")
    assert second.get(b"k") is None
    second.close()


def test_changelog_round_trip_skips_uncommitted_and_untagged_later_updates(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    topic = names("store.changelog")
    ensure_topics(names.admin, {topic: 2}, CHANGELOG_CONFIG)
    names.track(topic)
    committed = Producer({"bootstrap.servers": bootstrap, "transactional.id": names("txn-ok")})
    committed.init_transactions(30)
    committed.begin_transaction()
    write_changes(committed, topic, 1, {b"a": b"1", b"b": b"2"}, source_offset=10)
    write_changes(committed, topic, 1, {b"a": b"3", b"b": None}, source_offset=20)
    committed.commit_transaction(30)
    aborted = Producer({"bootstrap.servers": bootstrap, "transactional.id": names("txn-abort")})
    aborted.init_transactions(30)
    aborted.begin_transaction()
    write_changes(aborted, topic, 1, {b"a": b"never"}, source_offset=30)
    aborted.flush(30)
    aborted.abort_transaction(30)

    everything = read_changelog(bootstrap, topic, 1, up_to_source_offset=None)
    assert everything == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None)]
    # Source committed only up to offset 15: the entries tagged 20 must not be applied.
    assert read_changelog(bootstrap, topic, 1, up_to_source_offset=15) == [(b"a", b"1"), (b"b", b"2")]
    assert read_changelog(bootstrap, topic, 0, up_to_source_offset=None) == []
