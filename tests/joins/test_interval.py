"""Interval joins equal a brute-force oracle for random interleavings of the two sides, through crashes."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from streamsvc.joins import IntervalJoin, JoinResult

FLUSH = 10**15
KEYS = [b"a", b"b", b"c", b"d"]
Out = tuple[int, int | None]
Key = tuple[bytes | None, int, Out]


@dataclass(frozen=True)
class Rec:
    id: int
    side: Literal["left", "right"]
    key: bytes | None
    time: int

    @property
    def value(self) -> dict[str, Any]:
        return {"id": self.id, "pad": "x" * (self.id % 3)}


def combine(left: dict[str, Any], right: dict[str, Any] | None) -> Out:
    return left["id"], None if right is None else right["id"]


def make(before: int, after: int, how: str, grace: int) -> IntervalJoin[dict[str, Any], dict[str, Any], Out]:
    return IntervalJoin(before, after, "left" if how == "left" else "inner", combine, grace)


def generate(seed: int, partitions: int, n: int, synced: bool, jitter: int) -> dict[int, list[Rec]]:
    """Per partition, the order the runtime feeds records in. `synced`: the sides are interleaved by
    event time up to `jitter` ms (so grace >= jitter makes nothing late); otherwise randomly."""
    rng = random.Random(seed)
    parts: dict[int, list[Rec]] = {}
    next_id = 0
    for p in range(partitions):
        recs = []
        for _ in range(n):
            key = None if rng.random() < 0.05 else rng.choice(KEYS)
            recs.append(Rec(next_id, rng.choice(["left", "right"]), key, rng.randrange(0, 20 * n)))
            next_id += 1
        if synced:
            recs.sort(key=lambda r: r.time + rng.randrange(jitter))
        parts[p] = recs
    return parts


def oracle(
    parts: dict[int, list[Rec]], before: int, after: int, how: str, grace: int
) -> tuple[Counter[Key], set[int]]:
    """Offline: mark late records (below max time seen so far in the partition minus grace), then join
    every on-time pair in range by brute force and add the unmatched on-time lefts."""
    out: Counter[Key] = Counter()
    late: set[int] = set()
    for recs in parts.values():
        wm: int | None = None
        ontime = []
        for r in recs:
            if wm is not None and r.time < wm:
                late.add(r.id)
                continue
            wm = r.time - grace if wm is None else max(wm, r.time - grace)
            ontime.append(r)
        out += pure_join(ontime, before, after, how)
    return out, late


def pure_join(recs: list[Rec], before: int, after: int, how: str) -> Counter[Key]:
    out: Counter[Key] = Counter()
    rights = [r for r in recs if r.side == "right"]
    for left in (r for r in recs if r.side == "left"):
        matches = [
            r
            for r in rights
            if left.key is not None
            and r.key == left.key
            and left.time - before <= r.time <= left.time + after
        ]
        for r in matches:
            out[(left.key, max(left.time, r.time), (left.id, r.id))] += 1
        if not matches and how == "left":
            out[(left.key, left.time, (left.id, None))] += 1
    return out


def drive(
    parts: dict[int, list[Rec]], before: int, after: int, how: str, grace: int, seed: int, crash: float
) -> tuple[Counter[Key], set[int]]:
    """Random batches (runs of one side) of random partitions; commits publish output and changelog
    together; a crash restores a new worker from the changelog and rewinds to the committed positions.
    Finally every partition's watermark is advanced past all horizons."""
    rng = random.Random(seed)
    join = make(before, after, how, grace)
    logs: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in parts}
    pos = dict.fromkeys(parts, 0)
    committed_pos = dict(pos)
    committed: Counter[Key] = Counter()
    pending: Counter[Key] = Counter()
    late: set[int] = set()
    pending_late: set[int] = set()

    def emit(results: list[JoinResult[Out]]) -> None:
        pending.update((r.key, r.time_ms, r.value) for r in results)

    while any(pos[p] < len(parts[p]) for p in parts):
        p = rng.choice([q for q in parts if pos[q] < len(parts[q])])
        recs = parts[p]
        side, end = recs[pos[p]].side, pos[p]
        limit = pos[p] + rng.randint(1, 12)
        while end < min(limit, len(recs)) and recs[end].side == side:
            end += 1
        batch = recs[pos[p] : end]
        pos[p] = end
        process = join.process_left if side == "left" else join.process_right
        out = process(p, [r.key for r in batch], [r.time for r in batch], [r.value for r in batch])
        emit(out.results)
        pending_late.update(r.id for r, is_late in zip(batch, out.late.tolist(), strict=True) if is_late)
        assert out.watermark_ms == join.watermark(p)
        if rng.random() < 0.25:
            for q in parts:
                logs[q].extend(join.changes(q).items())
            committed += pending
            late |= pending_late
            pending, pending_late, committed_pos = Counter(), set(), dict(pos)
        elif rng.random() < crash:
            join = make(before, after, how, grace)
            for q in parts:
                join.restore(q, logs[q])
            pending, pending_late, pos = Counter(), set(), dict(committed_pos)
    for p in parts:
        emit(join.advance(p, FLUSH))
        assert join.buffered(p) == (0, 0)
    return committed + pending, late | pending_late


BOUNDS = [(0, 0, 0), (10, 10, 0), (50, 5, 30), (0, 40, 15), (-20, 60, 25), (30, -10, 100)]


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize(("before", "after", "grace"), BOUNDS)
@pytest.mark.parametrize("seed", range(4))
def test_random_interleavings_match_oracle_through_crashes(
    how: str, before: int, after: int, grace: int, seed: int
) -> None:
    parts = generate(seed, partitions=3, n=250, synced=False, jitter=0)
    result, late = drive(parts, before, after, how, grace, seed + 7, crash=0.05)
    expected, expected_late = oracle(parts, before, after, how, grace)
    assert late == expected_late
    assert result == expected


@pytest.mark.parametrize("how", ["inner", "left"])
@pytest.mark.parametrize("seed", range(6))
def test_with_enough_grace_results_equal_the_offline_join_for_any_interleaving(how: str, seed: int) -> None:
    before, after, jitter = 25, 40, 200
    expected: Counter[Key] = Counter()
    for shuffle in range(3):
        parts = generate(seed, partitions=2, n=250, synced=True, jitter=jitter)
        rng = random.Random(shuffle)
        for recs in parts.values():  # a different event-time-bounded interleaving of the same records
            recs.sort(key=lambda r: r.time + rng.randrange(jitter))
        result, late = drive(parts, before, after, how, jitter, seed + shuffle, crash=0.05)
        assert late == set()
        if shuffle == 0:
            expected = sum((pure_join(recs, before, after, how) for recs in parts.values()), Counter())
            assert expected.total() > 50
        assert result == expected


def test_restoring_after_every_batch_continues_identically() -> None:
    parts = generate(3, partitions=2, n=300, synced=False, jitter=0)
    rng = random.Random(5)
    plan = []  # (partition, side, start, end)
    pos = dict.fromkeys(parts, 0)
    while any(pos[p] < len(parts[p]) for p in parts):
        p = rng.choice([q for q in parts if pos[q] < len(parts[q])])
        end = pos[p]
        while (
            end < min(pos[p] + rng.randint(1, 10), len(parts[p]))
            and parts[p][end].side == parts[p][pos[p]].side
        ):
            end += 1
        plan.append((p, parts[p][pos[p]].side, pos[p], end))
        pos[p] = end

    def run(restore_each_batch: bool) -> list[Any]:
        join = make(15, 25, "left", 40)
        logs: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in parts}
        trace: list[Any] = []
        for p, side, start, end in plan:
            batch = parts[p][start:end]
            process = join.process_left if side == "left" else join.process_right
            out = process(p, [r.key for r in batch], [r.time for r in batch], [r.value for r in batch])
            trace.append((out.results, out.late.tolist(), out.watermark_ms, join.buffered(p)))
            logs[p].extend(join.changes(p).items())
            if restore_each_batch:
                join = make(15, 25, "left", 40)
                for q in parts:
                    join.restore(q, logs[q])
                    assert join.changes(q) == {}
        trace.extend(join.advance(p, FLUSH) for p in parts)
        return trace

    assert run(restore_each_batch=True) == run(restore_each_batch=False)


def test_left_record_without_match_is_emitted_with_none_when_its_horizon_closes() -> None:
    join: IntervalJoin[str, str, tuple[str, str | None]] = IntervalJoin(5, 10, "left", lambda a, b: (a, b))
    assert join.watermark(0) is None
    out = join.process_left(0, [b"k", b"k"], [100, 100], ["L1", "L2"])
    assert out.results == [] and out.watermark_ms == 100
    out = join.process_right(0, [b"k", b"other"], [104, 110], ["R1", "R2"])
    assert out.results == [JoinResult(b"k", 104, ("L1", "R1")), JoinResult(b"k", 104, ("L2", "R1"))]
    out = join.process_left(0, [b"z"], [110], ["L3"])  # wm 110 is not past horizon 100 + 10 yet
    assert out.results == [] and not out.late.any()
    assert join.buffered(0) == (3, 1)  # R1 evicted: 104 + 5 < 110
    out = join.process_right(0, [b"q"], [121], ["R3"])
    assert out.results == [JoinResult(b"z", 110, ("L3", None))]  # L1, L2 matched: no None row
    assert join.buffered(0) == (0, 1)  # R3 (R1, R2 evicted: 104 + 5, 110 + 5 < 121)
    assert join.advance(0, 500) == []


def test_inner_join_emits_no_unmatched_rows_and_late_records_are_flagged() -> None:
    join: IntervalJoin[str, str, tuple[str, str | None]] = IntervalJoin(0, 0, "inner", lambda a, b: (a, b), 5)
    assert join.process_left(0, [b"k"], [100], ["L1"]).results == []
    out = join.process_right(0, [b"k", b"k", b"k"], [100, 94, 95], ["R1", "R2", "R3"])
    assert out.results == [JoinResult(b"k", 100, ("L1", "R1"))]
    assert out.late.tolist() == [False, True, False]
    assert out.watermark_ms == 95
    assert join.advance(0, 10**6) == []


def test_null_keys_never_match_but_left_ones_are_emitted() -> None:
    join: IntervalJoin[str, str, tuple[str, str | None]] = IntervalJoin(10, 10, "left", lambda a, b: (a, b))
    assert join.process_right(0, [None], [50], ["R"]).results == []
    assert join.process_left(0, [None], [50], ["L"]).results == [JoinResult(None, 50, ("L", None))]
    assert join.buffered(0) == (0, 0)


def test_changelog_holds_only_what_survives_the_commit() -> None:
    join: IntervalJoin[int, int, int] = IntervalJoin(0, 0, "inner", lambda a, b: a, 0)
    join.process_left(0, [b"k"], [1], [1])
    join.process_left(0, [b"k"], [5], [2])  # evicts the record at 1 before any commit
    changes = join.changes(0)
    assert sorted(k[:1] for k in changes) == [b"l", b"m"]
    join.process_right(0, [b"k"], [9], [3])  # evicts the committed left at 5
    assert sorted((k[:1], v) for k, v in join.changes(0).items() if k != b"m") == [
        (b"l", None),
        (b"r", b"03"),
    ]
    assert join.changes(0) == {} and join.changes(1) == {}
    join.drop(0)
    assert join.partitions == frozenset() and join.watermark(0) is None


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty interval"):
        IntervalJoin(-5, 4, "inner", lambda a, b: a)
    with pytest.raises(ValueError, match="grace_ms"):
        IntervalJoin(1, 1, "inner", lambda a, b: a, -1)
    with pytest.raises(ValueError, match="how must be"):
        IntervalJoin(1, 1, "full", lambda a, b: a)  # type: ignore[arg-type]
    join: IntervalJoin[int, int, int] = IntervalJoin(1, 1, "inner", lambda a, b: a)
    with pytest.raises(ValueError, match="differ in length"):
        join.process_left(0, [b"k"], [1, 2], [1])


def test_restore_keeps_sequence_numbers_so_equal_times_stay_distinct_and_ordered() -> None:
    def make_join() -> IntervalJoin[str, str, tuple[str, str | None]]:
        return IntervalJoin(0, 0, "inner", lambda a, b: (a, b))

    join, log = make_join(), list[tuple[bytes, bytes | None]]()
    for value in ["L1", "L2", "L3"]:
        join.process_left(0, [b"k"], [100], [value])
        log.extend(join.changes(0).items())
        join = make_join()
        join.restore(0, log)
    out = join.process_right(0, [b"k"], [100], ["R"])
    assert [r.value for r in out.results] == [("L1", "R"), ("L2", "R"), ("L3", "R")]
