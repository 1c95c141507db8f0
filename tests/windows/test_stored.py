"""Tumbling and hopping windows resident in RocksDB (`FixedStored`) match the brute-force oracle and
the in-memory engine exactly, across commits and crashes that lose everything uncommitted (the
store only ever holds committed state; a restart continues from it and its checkpoint)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsvc.state.local import LocalStates
from streamsvc.windows import (
    Aggregate,
    Aggregation,
    Count,
    Hopping,
    Mean,
    Tumbling,
    WindowedAggregation,
    WindowSpec,
)
from tests.windows.oracle import columns, generate, oracle

FLUSH = 10**9


def _sorted_list() -> Aggregation:
    return Aggregate(list, lambda a, v: [*a, v], lambda a, b: a + b, lambda a: tuple(sorted(a)))


CASES: list[tuple[WindowSpec, Callable[[], Aggregation], Callable[[list[Any]], Any]]] = [
    (Tumbling(400, grace_ms=100), Count, len),
    (Hopping(800, 200), Mean, lambda vs: sum(vs, 0.0) / len(vs)),
    (Hopping(800, 200, grace_ms=50), _sorted_list, lambda vs: tuple(sorted(vs))),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("spec", "make", "fold"), CASES)
def test_stored_windows_match_the_oracle_across_crashes(
    spec: WindowSpec,
    make: Callable[[], Aggregation],
    fold: Callable[[list[Any]], Any],
    seed: int,
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(seed)
    lateness = int(rng.choice([0, 80]))
    parts = generate(rng, partitions=3, n=500, key_kind=["int", "str", "bytes"][seed])
    states = LocalStates(tmp_path)

    def start() -> WindowedAggregation:
        op = WindowedAggregation(
            spec, make(), allowed_lateness_ms=lateness, store=lambda p: states.open("w", p)
        )
        for p in parts:
            op.restore_local(p)
        return op

    op = start()
    assert op.resident
    committed, pos = dict.fromkeys(parts, 0), dict.fromkeys(parts, 0)
    pending: dict[int, list[Any]] = {p: [] for p in parts}
    results: list[Any] = []
    late: set[int] = set()
    pending_late: dict[int, set[int]] = {p: set() for p in parts}
    crashes = 0
    while live := [p for p in parts if pos[p] < len(parts[p])]:
        p = live[int(rng.integers(0, len(live)))]
        batch = parts[p][pos[p] : pos[p] + int(rng.integers(1, 40))]
        pos[p] += len(batch)
        out = op.process(p, *columns(batch, rng))
        pending[p] += out.results
        pending_late[p] |= {r.id for r, is_late in zip(batch, out.late.tolist(), strict=True) if is_late}
        roll = rng.random()
        if roll < 0.3:  # commit partition p: its changes become the local committed state
            states.open("w", p).commit(op.changes(p), None, pos[p])
            results += pending[p]
            late |= pending_late[p]
            pending[p], pending_late[p], committed[p] = [], set(), pos[p]
        elif roll < 0.4:  # kill -9: whatever was not committed is lost, every partition restarts
            states.close_all()
            op = start()
            pos = dict(committed)
            pending = {q: [] for q in parts}
            pending_late = {q: set() for q in parts}
            crashes += 1
    for p in parts:
        states.open("w", p).commit(op.changes(p), None, pos[p])
        results += pending[p] + op.advance(p, FLUSH)
        late |= pending_late[p]
    states.close_all()
    expected = oracle(parts, spec, fold, lateness, FLUSH)
    assert crashes > 2
    assert late == expected.late
    assert Counter((r.key, r.start_ms, r.end_ms, r.value) for r in results) == expected.final()


@pytest.mark.parametrize("emit", ["final", "update"])
def test_stored_and_in_memory_engines_give_the_same_batches_and_changelog_state(
    emit: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    recs = generate(rng, partitions=1, n=700)[0]
    spec = Hopping(600, 200, grace_ms=100)
    states = LocalStates(tmp_path)
    stored = WindowedAggregation(spec, Count(), emit, store=lambda p: states.open("w", p))
    memory = WindowedAggregation(spec, Count(), emit, vectorize=False)
    live_s: dict[bytes, bytes] = {}
    live_m: dict[bytes, bytes] = {}
    for i in range(0, len(recs), 45):
        batch = columns(recs[i : i + 45])
        a, b = stored.process(0, *batch), memory.process(0, *batch)
        assert sorted(map(repr, a.results)) == sorted(map(repr, b.results))
        assert a.late.tolist() == b.late.tolist()
        changes = stored.changes(0)
        states.open("w", 0).commit(changes, None, i)
        for live, ch in ((live_s, changes), (live_m, memory.changes(0))):
            for k, v in ch.items():
                if v is None:
                    live.pop(k, None)
                else:
                    live[k] = v
        assert live_s == live_m
        assert dict(states.open("w", 0).items()) == live_m
    states.close_all()
