"""State restored from `changes()` continues exactly like an uninterrupted run (crash, rebalance)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from streamsvc.windows import (
    Aggregate,
    Aggregation,
    Count,
    Hopping,
    Mean,
    Session,
    Sliding,
    Tumbling,
    WindowedAggregation,
    WindowResult,
    WindowSpec,
)
from tests.windows.oracle import Rec, Run, columns, drive, generate, oracle

FLUSH = 10**9
Log = list[tuple[bytes, bytes | None]]


class Cluster:
    """Workers sharing a changelog per partition. A commit appends a partition's `changes()` to its
    log and publishes the output produced since the previous commit, like one Kafka transaction;
    a crash loses everything uncommitted and the partitions restart from the last commit."""

    def __init__(self, make: Callable[[], WindowedAggregation], parts: dict[int, list[Rec]]) -> None:
        self.make, self.parts = make, parts
        self.logs: dict[int, Log] = {p: [] for p in parts}
        self.committed = dict.fromkeys(parts, 0)
        self.pos = dict.fromkeys(parts, 0)
        self.pending: dict[int, tuple[list[WindowResult], set[int]]] = {p: ([], set()) for p in parts}
        self.results: list[WindowResult] = []
        self.late: set[int] = set()
        self.workers = [make()]
        self.owner = dict.fromkeys(parts, 0)
        self.restores = 0

    def step(self, rng: np.random.Generator) -> bool:
        live = [p for p in self.parts if self.pos[p] < len(self.parts[p])]
        if not live:
            return False
        p = live[int(rng.integers(0, len(live)))]
        batch = self.parts[p][self.pos[p] : self.pos[p] + int(rng.integers(1, 30))]
        self.pos[p] += len(batch)
        out = self.workers[self.owner[p]].process(p, *columns(batch, rng))
        self.pending[p][0].extend(out.results)
        self.pending[p][1].update(r.id for r, late in zip(batch, out.late.tolist(), strict=True) if late)
        return True

    def commit(self, p: int) -> None:
        self.logs[p] += self.workers[self.owner[p]].changes(p).items()
        self.results += self.pending[p][0]
        self.late |= self.pending[p][1]
        self.pending[p] = ([], set())
        self.committed[p] = self.pos[p]

    def _restore(self, p: int, worker: int) -> None:
        self.workers[worker].restore(p, self.logs[p])
        assert self.workers[worker].changes(p) == {}
        self.owner[p], self.pos[p], self.pending[p] = worker, self.committed[p], ([], set())
        self.restores += 1

    def crash(self, worker: int) -> None:
        """SIGKILL: the worker's uncommitted work is lost; it restarts and restores its partitions."""
        self.workers[worker] = self.make()
        for p in [p for p, w in self.owner.items() if w == worker]:
            self._restore(p, worker)

    def rebalance(self, n_workers: int, rng: np.random.Generator) -> None:
        """Scale to `n_workers`: revoked partitions commit, are dropped, and are restored elsewhere."""
        while len(self.workers) < n_workers:
            self.workers.append(self.make())
        for p in self.parts:
            target = int(rng.integers(0, n_workers))
            if target != self.owner[p] or self.owner[p] >= n_workers:
                self.commit(p)
                self.workers[self.owner[p]].drop(p)
                assert p not in self.workers[self.owner[p]].partitions
                self._restore(p, target)
        del self.workers[n_workers:]

    def finish(self) -> None:
        for p in self.parts:
            self.commit(p)
            self.results += self.workers[self.owner[p]].advance(p, FLUSH)


def _sorted_list() -> Aggregation:
    return Aggregate(list, lambda a, v: [*a, v], lambda a, b: a + b, lambda a: tuple(sorted(a)))


CASES: list[tuple[WindowSpec, Callable[[], Aggregation], Callable[[list[Any]], Any], bool]] = [
    (Tumbling(400, grace_ms=100), Count, len, True),
    (Hopping(800, 200), Mean, lambda vs: sum(vs, 0.0) / len(vs), True),
    (Hopping(800, 200, grace_ms=50), _sorted_list, lambda vs: tuple(sorted(vs)), False),
    (Sliding(300, grace_ms=100), Count, len, False),
    (Sliding(200), _sorted_list, lambda vs: tuple(sorted(vs)), False),
    (Session(150, grace_ms=100), Count, len, False),
    (Session(90), Mean, lambda vs: sum(vs, 0.0) / len(vs), False),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("spec", "make", "fold", "vectorize"), CASES)
def test_crashes_and_rebalances_match_oracle(
    spec: WindowSpec,
    make: Callable[[], Aggregation],
    fold: Callable[[list[Any]], Any],
    vectorize: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    lateness = int(rng.choice([0, 80]))
    parts = generate(rng, partitions=4, n=500, key_kind=["int", "str", "bytes"][seed])

    def new() -> WindowedAggregation:
        return WindowedAggregation(spec, make(), allowed_lateness_ms=lateness, vectorize=vectorize)

    cluster = Cluster(new, parts)
    scale = iter([2, 1, 2, 1])  # 1 -> 2 -> 1 -> 2 -> 1 workers
    while cluster.step(rng):
        roll = rng.random()
        if roll < 0.25:
            cluster.commit(int(rng.integers(0, len(parts))))
        elif roll < 0.35:
            cluster.crash(int(rng.integers(0, len(cluster.workers))))
        elif roll < 0.45 and (n := next(scale, None)) is not None:
            cluster.rebalance(n, rng)
    cluster.finish()

    expected = oracle(parts, spec, fold, lateness, FLUSH)
    assert cluster.restores > 5
    assert cluster.late == expected.late
    assert Counter((r.key, r.start_ms, r.end_ms, r.value) for r in cluster.results) == expected.final()


@pytest.mark.parametrize(
    "spec",
    [Tumbling(300), Hopping(900, 300, grace_ms=100), Sliding(250, grace_ms=50), Session(100, grace_ms=40)],
)
@pytest.mark.parametrize("emit", ["final", "update"])
def test_restore_mid_stream_equals_uninterrupted_run(spec: WindowSpec, emit: Any) -> None:
    rng = np.random.default_rng(11)
    parts = generate(rng, partitions=1, n=600)
    recs = parts[0]

    def new() -> WindowedAggregation:
        return WindowedAggregation(spec, Count(), emit)

    whole = new()
    expected = [whole.process(0, *columns(recs[i : i + 50])) for i in range(0, len(recs), 50)]

    op = new()
    log: list[tuple[bytes, bytes | None]] = []
    for k, i in enumerate(range(0, len(recs), 50)):
        out = op.process(0, *columns(recs[i : i + 50]))
        assert sorted(map(repr, out.results)) == sorted(map(repr, expected[k].results))
        assert out.late.tolist() == expected[k].late.tolist()
        log += op.changes(0).items()
        if k % 3 == 1:
            watermark = op.watermark(0)
            op = new()
            op.restore(0, log)
            assert op.watermark(0) == watermark
    assert sum(v is None for _, v in log) > 0, "closed windows are deleted from the changelog"


def test_changelog_is_the_same_for_both_fixed_engines_and_restores_across_them() -> None:
    rng = np.random.default_rng(5)
    recs = generate(rng, partitions=1, n=800, integral=False)[0]
    spec = Hopping(700, 350, grace_ms=100)
    vec, rec = (WindowedAggregation(spec, Mean(), vectorize=v) for v in (True, False))
    log: list[tuple[bytes, bytes | None]] = []
    for i in range(0, 400, 37):
        batch = columns(recs[i : min(i + 37, 400)])
        vec.process(0, *batch)
        rec.process(0, *batch)
        changes = vec.changes(0)
        assert changes == rec.changes(0)
        log += changes.items()
    runs: list[Run] = []
    for op, vectorize in ((vec, True), (rec, False)):
        restored = WindowedAggregation(spec, Mean(), vectorize=not vectorize)
        restored.restore(0, log)
        for o in (op, restored):
            runs.append(drive(o, {0: recs[400:]}, np.random.default_rng(len(runs)), flush=FLUSH))
    assert all(r.final() == runs[0].final() and r.late == runs[0].late for r in runs)
    assert runs[0].final()
