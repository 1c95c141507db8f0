"""Aggregations: the numpy and one-at-a-time paths agree bit for bit, and accumulators round-trip."""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsvc.windows import (
    Aggregate,
    Aggregation,
    Count,
    Max,
    Mean,
    Min,
    Reduce,
    Sum,
    Tumbling,
    WindowedAggregation,
)
from streamsvc.windows.aggregations import ColumnarAggregation

BUILTINS: list[ColumnarAggregation] = [
    Count(),
    Sum(),
    Sum("int64"),
    Min(),
    Min("int64"),
    Max(),
    Max("int64"),
    Mean(),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize("agg", BUILTINS, ids=lambda a: f"{type(a).__name__}-{a.dtype}")
@pytest.mark.parametrize("seed", range(3))
def test_columnar_and_record_paths_agree(agg: ColumnarAggregation, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, cells = 2000, 17
    idx = rng.integers(0, cells, n).astype(np.intp)
    if agg.dtype is not None and agg.dtype.kind == "i":
        raw: Any = rng.integers(-(10**12), 10**12, n)
    else:
        raw = rng.normal(size=n) * 1e6
        raw[rng.integers(0, n, 3)] = np.nan if seed == 2 else 0.5
    cols = agg.new_columns((cells,))
    agg.update(cols, idx, agg.values_array(raw, n))
    accs = [agg.init() for _ in range(cells)]
    for i, v in zip(idx.tolist(), agg.prepare(raw, n), strict=True):
        accs[i] = agg.add(accs[i], v)
    touched = np.unique(idx)
    results = agg.results(cols, touched)
    encoded = agg.encode(cols, touched)
    for c, res, enc in zip(touched.tolist(), results, encoded, strict=True):
        assert _same(res, agg.result(accs[c]))
        assert enc == agg.dumps(accs[c])
        assert _same(agg.result(agg.loads(enc)), res)
        fresh = agg.new_columns((1,))
        agg.store(fresh, 0, agg.loads(enc))
        assert agg.encode(fresh, np.array([0], dtype=np.intp)) == [enc]


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=20), st.integers(0, 20))
def test_merge_of_parts_equals_the_whole(values: list[int], cut: int) -> None:
    aggs = [
        *BUILTINS,
        Reduce(lambda a, b: a + b),
        Aggregate(lambda: 0, lambda a, v: a + v, lambda a, b: a + b),
    ]
    for agg in aggs:

        def fold(vs: list[int], agg: Aggregation = agg) -> Any:
            return reduce(agg.add, agg.prepare(vs, len(vs)), agg.init())

        assert agg.result(agg.merge(fold(values[:cut]), fold(values[cut:]))) == agg.result(fold(values))


def test_result_types() -> None:
    vals = [3.0, 1.0, 2.0]
    expected: list[tuple[ColumnarAggregation, Any]] = [
        (Count(), 3),
        (Sum(), 6.0),
        (Sum("int64"), 6),
        (Min(), 1.0),
        (Max("int64"), 3),
        (Mean(), 2.0),
    ]
    for vectorize in (True, False):
        for agg, value in expected:
            op = WindowedAggregation(Tumbling(10), agg, vectorize=vectorize)
            op.process(
                0,
                ["k"] * 3,
                np.array([1, 2, 3]),
                vals if agg.dtype is None or agg.dtype.kind == "f" else [3, 1, 2],
            )
            [result] = op.advance(0, 100)
            assert _same(result.value, value), (agg, vectorize)


def test_int64_sum_refuses_float_values() -> None:
    with pytest.raises(TypeError):
        Sum("int64").values_array(np.array([1.5]), 1)
    with pytest.raises(ValueError):
        Sum("int32")  # type: ignore[arg-type]


def test_user_aggregations() -> None:
    r = Reduce(max)
    acc = reduce(r.add, [3, 9, 2], r.init())
    assert r.result(acc) == 9 and r.loads(r.dumps(acc)) == 9
    assert r.merge(r.init(), acc) == 9 and r.merge(acc, r.init()) == 9
    with pytest.raises(ValueError):
        r.dumps(r.init())

    top2 = Aggregate(list, lambda a, v: sorted([*a, v])[-2:], result=tuple)
    assert not top2.mergeable
    acc = reduce(top2.add, [5, 1, 7, 3], top2.init())
    assert top2.result(top2.loads(top2.dumps(acc))) == (5, 7)
    with pytest.raises(TypeError):
        top2.merge([1], [2])
    assert Aggregate(lambda: 0, lambda a, v: a + v, lambda a, b: a + b).mergeable


def test_user_aggregation_in_an_operator_with_custom_codec() -> None:
    agg = Aggregate(
        frozenset,
        lambda a, v: a | {v},
        result=sorted,
        dumps=lambda a: ",".join(sorted(a)).encode(),
        loads=lambda b: frozenset(b.decode().split(",")),
    )
    op = WindowedAggregation(Tumbling(10), agg)
    op.process(0, [b"k", b"k", b"k"], np.array([1, 2, 3]), ["x", "y", "x"])
    log = list(op.changes(0).items())
    restored = WindowedAggregation(Tumbling(10), agg)
    restored.restore(0, log)
    restored.process(0, [b"k"], np.array([4]), ["z"])
    [result] = restored.advance(0, 100)
    assert (result.key, result.start_ms, result.end_ms, result.value) == (b"k", 0, 10, ["x", "y", "z"])
