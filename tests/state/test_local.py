"""LocalState: committed entries and their checkpoint change together; uncommitted writes never
reach the database; a reopened store has exactly the committed state."""

from __future__ import annotations

from pathlib import Path

from streamsvc.state.local import Checkpoint, LocalState, LocalStates
from streamsvc.state.store import RocksDBStore


def test_pending_writes_are_read_through_but_only_committed_ones_survive(tmp_path: Path) -> None:
    s = LocalState(tmp_path / "a")
    assert s.checkpoint() is None
    s.put(b"k1", b"v1")
    s.put(b"k2", b"v2")
    assert s.get(b"k1") == b"v1" and len(s) == 2
    s.commit({b"k1": b"v1", b"k2": b"v2"}, changelog_offset=7, source_offset=100)
    s.put(b"k1", b"uncommitted")
    s.delete(b"k2")
    assert s.get(b"k1") == b"uncommitted" and s.get(b"k2") is None
    assert dict(s.scan(b"k")) == {b"k1": b"uncommitted"}
    s.close()  # a crash: the pending writes are gone
    again = LocalState(tmp_path / "a")
    assert again.checkpoint() == Checkpoint(7, 100)
    assert dict(again.items()) == {b"k1": b"v1", b"k2": b"v2"}
    again.put(b"k3", b"x")
    again.discard()
    assert again.get(b"k3") is None
    again.commit({b"k1": None}, changelog_offset=None, source_offset=120)
    assert again.checkpoint() == Checkpoint(7, 120), "no changelog offset given: the old one stays"
    assert dict(again.items()) == {b"k2": b"v2"}
    again.wipe()
    assert again.checkpoint() is None and dict(again.items()) == {}
    again.close()


def test_load_folds_a_changelog_tail_and_checkpoints_it(tmp_path: Path) -> None:
    s = LocalState(tmp_path / "b", cache_entries=10)
    for i in range(30):
        s.get(f"miss{i}".encode())
    assert len(s.cache) <= 10
    n = s.load([(b"a", b"1"), (b"b", b"2"), (b"a", None), (b"c", b"3")], changelog_offset=4, source_offset=9)
    assert n == 4 and s.checkpoint() == Checkpoint(4, 9)
    assert dict(s.items()) == {b"b": b"2", b"c": b"3"}
    s.close()


def test_local_states_reopen_closed_ones(tmp_path: Path) -> None:
    states = LocalStates(tmp_path)
    first = states.open("w", 0)
    assert states.open("w", 0) is first
    first.close()
    second = states.open("w", 0)
    assert second is not first and not second.closed
    states.close_all()
    db = RocksDBStore(tmp_path / "raw")
    db.write({b"x": b"1", b"y": b"2"}, {b"m": b"meta"})
    db.write({b"x": None})
    assert list(db.items()) == [(b"y", b"2")] and db.meta(b"m") == b"meta" and len(db) == 1
    db.destroy()
    assert not (tmp_path / "raw").exists()
