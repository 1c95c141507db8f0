"""CDC tables equal a brute-force "last change per key" oracle, and restore from their changelog."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from streamsvc.errors import MalformedPayloadError
from streamsvc.joins import CdcTable, GlobalTable
from streamsvc.serde.debezium import TOMBSTONE, ChangeRecord

KEYS = [f'{{"id":{i}}}'.encode() for i in range(12)]
Log = list[tuple[bytes, bytes | None]]


@dataclass(frozen=True)
class Event:
    partition: int
    key: bytes
    change: ChangeRecord | None


def random_change(rng: random.Random, key: bytes) -> ChangeRecord | None:
    op = rng.choice(["c", "u", "u", "r", "d", "tombstone", "none", "t", "m"])
    row: dict[str, Any] = {
        "id": orjson.loads(key)["id"],
        "n": rng.randint(-(10**12), 10**12),
        "s": rng.choice(["", "é", "x" * rng.randint(0, 5)]),
        "f": rng.random(),
        "tags": [rng.randint(0, 3) for _ in range(rng.randint(0, 3))],
        "extra": None if rng.random() < 0.5 else {"a": True},
    }
    if op == "none":
        return None
    if op == TOMBSTONE:
        return ChangeRecord(op=TOMBSTONE)
    if op == "d":
        return ChangeRecord(op="d", before=row)
    if op in ("t", "m"):
        return ChangeRecord(op=op)
    return ChangeRecord(op=op, before=None if op in ("c", "r") else row, after=row)


def generate(seed: int, n: int, partitions: int) -> list[Event]:
    rng = random.Random(seed)
    return [Event(rng.randrange(partitions), k := rng.choice(KEYS), random_change(rng, k)) for _ in range(n)]


def oracle(events: list[Event], key: bytes, partition: int | None) -> dict[str, Any] | None:
    """The row `key` has after `events`, found by scanning back to its last keyed change
    (in `partition`, or in any partition when None)."""
    for e in reversed(events):
        if e.key != key or (partition is not None and e.partition != partition):
            continue
        if e.change is not None and e.change.op in ("t", "m"):
            continue
        if e.change is None or e.change.op in ("d", TOMBSTONE):
            return None
        return e.change.after
    return None


@pytest.mark.parametrize("seed", range(8))
def test_cdc_table_matches_oracle_and_restores(seed: int) -> None:
    partitions = 3
    events = generate(seed, 600, partitions)
    rng = random.Random(seed + 1000)
    table = CdcTable("customers")
    logs: dict[int, Log] = {p: [] for p in range(partitions)}
    for i, e in enumerate(events):
        table.apply(e.partition, e.key, e.change)
        if rng.random() < 0.1:  # commit every partition's changes
            for p in range(partitions):
                logs[p].extend(table.changes(p).items())
        if rng.random() < 0.02:  # crash after a commit: a new instance restores from the changelog
            for p in range(partitions):
                logs[p].extend(table.changes(p).items())
            table = CdcTable("customers")
            for p in range(partitions):
                table.restore(p, logs[p])
                assert table.changes(p) == {}
        if rng.random() < 0.05 or i == len(events) - 1:
            for p in range(partitions):
                for key in KEYS:
                    assert table.get(p, key) == oracle(events[: i + 1], key, p)
    for p in range(partitions):
        logs[p].extend(table.changes(p).items())
        compacted = CdcTable("copy")
        compacted.restore(p, logs[p])
        assert dict(compacted.rows(p)) == dict(table.rows(p))


@pytest.mark.parametrize("seed", range(8))
def test_global_table_matches_oracle_over_all_partitions(seed: int) -> None:
    partitions = 3
    events = generate(seed, 600, partitions)
    rng = random.Random(seed + 2000)
    table = GlobalTable("customers")
    logs: dict[int, Log] = {p: [] for p in range(partitions)}
    for i, e in enumerate(events):
        table.apply(e.partition, e.key, e.change)
        if rng.random() < 0.1:
            for p in range(partitions):
                logs[p].extend(table.changes(p).items())
        if rng.random() < 0.02:
            for p in range(partitions):
                logs[p].extend(table.changes(p).items())
            table = GlobalTable("customers")
            for p in range(partitions):
                table.restore(p, logs[p])
        if rng.random() < 0.05 or i == len(events) - 1:
            for key in KEYS:
                expected = oracle(events[: i + 1], key, None)
                assert [table.get(p, key) for p in range(partitions)] == [expected] * partitions
    assert len(table.rows()) == sum(len(table.rows(p)) for p in range(partitions))


def test_upserts_deletes_and_ignored_ops() -> None:
    table = CdcTable("t")
    row = {"id": 1, "name": "a"}
    table.apply(0, b"1", ChangeRecord(op="c", after=row))
    assert table.get(0, b"1") == row
    assert table.get(1, b"1") is None  # other partition
    table.apply(0, b"1", ChangeRecord(op="t"))
    table.apply(0, b"1", ChangeRecord(op="m"))
    assert table.get(0, b"1") == row
    assert table.changes(0) == {b"1": orjson.dumps(row)}
    table.apply(0, b"1", ChangeRecord(op="d", before=row))
    assert table.get(0, b"1") is None
    assert table.changes(0) == {b"1": None}
    table.apply(0, b"1", ChangeRecord(op=TOMBSTONE))  # Debezium's tombstone after the delete
    table.apply(0, b"2", None)
    assert table.changes(0) == {}  # deleting an absent key writes nothing


def test_insert_then_delete_within_one_commit_writes_a_tombstone_only() -> None:
    table = CdcTable("t")
    table.apply(0, b"1", ChangeRecord(op="r", after={"id": 1}))
    table.apply(0, b"1", None)
    assert table.changes(0) == {b"1": None}


def test_drop_and_restore() -> None:
    table = CdcTable("t")
    table.apply(2, b"k", ChangeRecord(op="c", after={"v": 1}))
    log = list(table.changes(2).items())
    table.drop(2)
    assert table.get(2, b"k") is None and table.partitions == frozenset()
    table.restore(2, [*log, (b"gone", b'{"v":0}'), (b"gone", None)])
    assert dict(table.rows(2)) == {b"k": {"v": 1}}


def test_global_table_key_moving_partitions_is_deleted_from_the_old_changelog() -> None:
    table = GlobalTable("t")
    table.apply(0, b"k", ChangeRecord(op="c", after={"v": 1}))
    assert table.changes(0) == {b"k": b'{"v":1}'}
    table.apply(1, b"k", ChangeRecord(op="u", after={"v": 2}))
    assert table.changes(0) == {b"k": None}
    assert table.changes(1) == {b"k": b'{"v":2}'}
    assert table.get(7, b"k") == {"v": 2}
    table.drop(0)
    assert table.get(0, b"k") == {"v": 2}
    table.drop(1)
    assert table.get(0, b"k") is None


def test_malformed_events_fail_before_changing_state() -> None:
    table = CdcTable("orders")
    with pytest.raises(MalformedPayloadError, match=r"orders.*without an `after`"):
        table.apply(0, b"k", ChangeRecord(op="u", before={"id": 1}))
    with pytest.raises(TypeError, match="bytes"):
        table.apply(0, None, ChangeRecord(op="c", after={"id": 1}))  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # orjson cannot encode a set
        table.apply(0, b"k", ChangeRecord(op="c", after={"id": {1}}))
    assert table.get(0, b"k") is None and table.changes(0) == {}
