"""The operator, fed random batches in random partition interleavings, equals the brute-force oracle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from streamsvc.windows import (
    Aggregate,
    Aggregation,
    Count,
    Hopping,
    Max,
    Mean,
    Min,
    Reduce,
    Session,
    Sliding,
    Sum,
    Tumbling,
    WindowedAggregation,
    WindowSpec,
)
from tests.windows.oracle import drive, generate, oracle

FLUSH = 10**9


def _sum(vs: list[Any]) -> Any:
    total = 0.0
    for v in vs:
        total += v
    return total


AggCase = tuple[str, Callable[[], Aggregation], Callable[[list[Any]], Any]]

COMMON: list[AggCase] = [
    ("count", Count, len),
    ("sum", Sum, _sum),
    ("min", Min, min),
    ("max", Max, max),
    ("mean", Mean, lambda vs: _sum(vs) / len(vs)),
    ("reduce", lambda: Reduce(lambda a, b: a + b), _sum),
]
# Fixed windows fold in record order: an order-sensitive aggregate checks that.
IN_ORDER: AggCase = ("in-order list", lambda: Aggregate(list, lambda a, v: [*a, v], result=tuple), tuple)
# Sliding and session windows merge partial results: the aggregate must be commutative.
SORTED: AggCase = (
    "sorted list",
    lambda: Aggregate(list, lambda a, v: [*a, v], lambda a, b: a + b, lambda a: tuple(sorted(a))),
    lambda vs: tuple(sorted(vs)),
)


def check(spec: WindowSpec, seed: int, cases: list[AggCase], vectorize: tuple[bool, ...], **gen: Any) -> None:
    rng = np.random.default_rng(seed)
    lateness = int(rng.choice([0, 0, 100, 250]))
    parts = generate(rng, key_kind=["int", "str", "bytes"][seed % 3], **gen)
    for name, make, fold in cases:
        for flush in (None, FLUSH):
            expected = oracle(parts, spec, fold, lateness, flush)
            assert expected.late and expected.closed, "a meaningful case has late records and results"
            for vec in vectorize:
                op = WindowedAggregation(spec, make(), allowed_lateness_ms=lateness, vectorize=vec)
                run = drive(op, parts, np.random.default_rng(seed * 1000 + len(name)), flush=flush)
                where = f"{name} vectorize={vec} flush={flush}"
                assert run.late == expected.late, where
                assert run.final() == expected.final(), where
                assert len(run.results) == len(expected.closed), f"{where}: a window emitted twice"


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "spec",
    [Tumbling(1000), Tumbling(700, grace_ms=300), Hopping(1000, 250), Hopping(1000, 300, grace_ms=200)],
)
def test_fixed_windows_match_oracle(spec: WindowSpec, seed: int) -> None:
    check(spec, seed, [*COMMON, IN_ORDER], (True, False), integral=False)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("spec", [Sliding(300), Sliding(500, grace_ms=200), Sliding(1)])
def test_sliding_windows_match_oracle(spec: Sliding, seed: int) -> None:
    density = {"keys": 20, "n": 600} if spec.size_ms == 1 else {}
    if spec.size_ms == 1:
        # one-millisecond windows only mean something when times collide
        check(spec, seed, [*COMMON, SORTED], (False,), span=300, disorder=5, late_by=300, **density)
    else:
        check(spec, seed, [*COMMON, SORTED], (False,))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("spec", [Session(100), Session(60, grace_ms=300), Session(400)])
def test_session_windows_match_oracle(spec: Session, seed: int) -> None:
    check(spec, seed, [*COMMON, SORTED], (False,))


def test_tumbling_with_negative_times_and_big_jumps() -> None:
    rng = np.random.default_rng(7)
    parts = generate(rng, span=20_000, disorder=3000, late_frac=0.2, late_by=20_000)
    for recs in parts.values():
        recs[:] = [type(r)(r.id, r.key, r.t - 10_000, r.value) for r in recs]
    for spec in (Tumbling(333, grace_ms=100), Hopping(900, 100)):
        expected = oracle(parts, spec, len, 0, FLUSH)
        run = drive(WindowedAggregation(spec, Count()), parts, rng, max_batch=200, flush=FLUSH)
        assert run.late == expected.late
        assert run.final() == expected.final()
