"""Stream-table joins equal a brute-force oracle over interleaved CDC updates and stream records."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from streamsvc.joins import CdcTable, GlobalTable, Row, StreamTableJoin
from streamsvc.serde.debezium import TOMBSTONE, ChangeRecord

KEYS = [b"a", b"b", b"c", b"d", b"e", b"f"]


@dataclass(frozen=True)
class Update:
    key: bytes
    change: ChangeRecord | None


@dataclass(frozen=True)
class Record:
    id: int
    key: bytes | None
    value: dict[str, Any]


Item = Update | Record


def generate(seed: int, n: int, partitions: int) -> dict[int, list[Item]]:
    """Per partition, table updates and stream records in the offset-time order the runtime feeds."""
    rng = random.Random(seed)
    parts: dict[int, list[Item]] = {p: [] for p in range(partitions)}
    for i in range(n):
        p = rng.randrange(partitions)
        key = rng.choice(KEYS)
        if rng.random() < 0.4:
            op = rng.choice(["c", "u", "r", "d", TOMBSTONE, "none", "t"])
            change = None
            if op in ("c", "u", "r"):
                change = ChangeRecord(op=op, after={"k": key.decode(), "v": rng.randint(0, 99)})
            elif op != "none":
                change = ChangeRecord(op=op)
            parts[p].append(Update(key, change))
        else:
            parts[p].append(Record(i, None if rng.random() < 0.05 else key, {"id": i}))
    return parts


def combine(value: dict[str, Any], row: Row | None) -> tuple[int, int | None]:
    return value["id"], None if row is None else row["v"]


def oracle(order: list[tuple[int, Item]], how: str, per_partition: bool) -> Counter[tuple[int, int | None]]:
    """Scan back from each record to the last keyed update of its key (same partition if `per_partition`)."""
    out: Counter[tuple[int, int | None]] = Counter()
    for i, (p, item) in enumerate(order):
        if not isinstance(item, Record):
            continue
        row = None
        for q, prior in reversed(order[:i]):
            if not isinstance(prior, Update) or prior.key != item.key or (per_partition and q != p):
                continue
            if prior.change is not None and prior.change.op == "t":
                continue
            if prior.change is not None and prior.change.op in ("c", "u", "r"):
                row = prior.change.after
            break
        if row is not None or how == "left":
            out[combine(item.value, row)] += 1
    return out


def drive(
    parts: dict[int, list[Item]], how: str, global_table: bool, seed: int
) -> tuple[Counter[tuple[int, int | None]], list[tuple[int, Item]]]:
    """Feed random batches of random partitions (each partition in order), committing changelogs and
    sometimes crashing: a new worker restores from the changelog, discards uncommitted output and
    resumes from the committed positions. Returns the committed output and the processing order
    of the committed run."""
    rng = random.Random(seed)
    partitions = list(parts)

    def make() -> tuple[CdcTable | GlobalTable, StreamTableJoin[dict[str, Any], tuple[int, int | None]]]:
        table: CdcTable | GlobalTable = GlobalTable("t") if global_table else CdcTable("t")
        return table, StreamTableJoin(table, "left" if how == "left" else "inner", combine)

    table, join = make()
    logs: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
    pos = dict.fromkeys(partitions, 0)
    committed_pos = dict(pos)
    committed: Counter[tuple[int, int | None]] = Counter()
    pending: Counter[tuple[int, int | None]] = Counter()
    order: list[tuple[int, Item]] = []
    pending_order: list[tuple[int, Item]] = []
    while any(pos[p] < len(parts[p]) for p in partitions):
        p = rng.choice([q for q in partitions if pos[q] < len(parts[q])])
        items = parts[p]
        if isinstance(items[pos[p]], Update):
            update = items[pos[p]]
            assert isinstance(update, Update)
            table.apply(p, update.key, update.change)
            pending_order.append((p, update))
            pos[p] += 1
        else:
            end = pos[p]
            while end < len(items) and isinstance(items[end], Record) and end - pos[p] < rng.randint(1, 8):
                end += 1
            batch = [r for r in items[pos[p] : end] if isinstance(r, Record)]
            pos[p] = end
            for index, joined in join.process(p, [r.key for r in batch], [r.value for r in batch]):
                assert joined[0] == batch[index].id
                pending[joined] += 1
            pending_order.extend((p, r) for r in batch)
        if rng.random() < 0.2:  # commit: changelog, output and positions together
            for q in partitions:
                logs[q].extend(table.changes(q).items())
            committed += pending
            order += pending_order
            pending, pending_order, committed_pos = Counter(), [], dict(pos)
        elif rng.random() < 0.03:  # crash
            table, join = make()
            for q in partitions:
                table.restore(q, logs[q])
            pending, pending_order, pos = Counter(), [], dict(committed_pos)
    return committed + pending, order + pending_order


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("global_table", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_stream_table_join_matches_oracle_through_crashes(how: str, global_table: bool, seed: int) -> None:
    parts = generate(seed, 500, 3)
    result, order = drive(parts, how, global_table, seed + 100)
    assert result == oracle(order, how, per_partition=not global_table)
    if how == "left":
        assert result.total() == sum(isinstance(i, Record) for items in parts.values() for i in items)


def test_left_join_emits_none_for_missing_deleted_and_null_keys() -> None:
    table = CdcTable("customers")
    join: StreamTableJoin[str, tuple[str, Row | None]] = StreamTableJoin(
        table, "left", lambda v, row: (v, row)
    )
    table.apply(0, b"c1", ChangeRecord(op="c", after={"name": "Ada"}))
    table.apply(0, b"c2", ChangeRecord(op="c", after={"name": "Bob"}))
    table.apply(0, b"c2", ChangeRecord(op="d", before={"name": "Bob"}))
    out = join.process(0, [b"c1", b"c2", b"c3", None], ["o1", "o2", "o3", "o4"])
    assert out == [(0, ("o1", {"name": "Ada"})), (1, ("o2", None)), (2, ("o3", None)), (3, ("o4", None))]
    inner: StreamTableJoin[str, tuple[str, Row | None]] = StreamTableJoin(table, "inner", lambda v, r: (v, r))
    assert inner.process(0, [b"c1", b"c2", None], ["o1", "o2", "o4"]) == [(0, ("o1", {"name": "Ada"}))]
    assert inner.process(1, [b"c1"], ["o1"]) == []  # co-partitioned: partition 1 has no rows


def test_join_uses_the_table_as_of_arrival() -> None:
    table = GlobalTable("rates")
    join: StreamTableJoin[int, int] = StreamTableJoin(table, "inner", lambda v, row: v * (row or {})["rate"])
    table.apply(3, b"EUR", ChangeRecord(op="c", after={"rate": 2}))
    first = join.process(0, [b"EUR"], [10])
    table.apply(3, b"EUR", ChangeRecord(op="u", after={"rate": 3}))
    assert first == [(0, 20)]  # not re-emitted by the update
    assert join.process(5, [b"EUR"], [10]) == [(0, 30)]
    assert join.requires_copartitioning is False
    assert StreamTableJoin(CdcTable("x"), "left", lambda v, r: v).requires_copartitioning is True


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="how must be one of"):
        StreamTableJoin(CdcTable("x"), "outer", lambda v, r: v)  # type: ignore[arg-type]
    join: StreamTableJoin[int, int] = StreamTableJoin(CdcTable("x"), "left", lambda v, r: v)
    with pytest.raises(ValueError, match="differ in length"):
        join.process(0, [b"a"], [])
