"""The documented window semantics, by hand-worked example."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamsvc.errors import RecordFoldError
from streamsvc.windows import (
    Aggregate,
    Count,
    Hopping,
    Session,
    Sliding,
    Sum,
    Tumbling,
    WindowedAggregation,
    WindowOutput,
    WindowSpec,
)


def feed(op: WindowedAggregation, keys: list[Any], times: list[int], partition: int = 0) -> WindowOutput:
    return op.process(partition, keys, np.array(times, dtype=np.int64), np.ones(len(times)))


def windows(spec: WindowSpec, times: list[int], **kw: Any) -> list[tuple[int, int, Any]]:
    op = WindowedAggregation(spec, Count(), **kw)
    out = feed(op, ["k"] * len(times), times)
    return sorted((r.start_ms, r.end_ms, r.value) for r in [*out.results, *op.advance(0, 10**9)])


def test_tumbling_and_hopping_bounds() -> None:
    assert windows(Tumbling(1000), [-1, 999, 1000]) == [(-1000, 0, 1), (0, 1000, 1), (1000, 2000, 1)]
    assert windows(Hopping(10, 5), [7]) == [(0, 10, 1), (5, 15, 1)]
    assert windows(Hopping(10, 4), [9]) == [(0, 10, 1), (4, 14, 1), (8, 18, 1)]


def test_sliding_windows_are_kafka_streams_windows() -> None:
    # d = 10; records at 5 and 12: L(5) = [-5, 5], L(12) = [2, 12], R(5) = [6, 16]; no R(12) (nothing after).
    assert windows(Sliding(10), [5, 12]) == [(-5, 6, 1), (2, 13, 2), (6, 17, 1)]
    # Out of order (with enough grace to keep [-5, 5] open), the same windows; 23 - 12 = 11 > d.
    assert windows(Sliding(10, grace_ms=20), [12, 5, 23]) == [(-5, 6, 1), (2, 13, 2), (6, 17, 1), (13, 24, 1)]
    # Without grace, 12 closed L(5) before 5 arrived: 5 only lands in R(5), which holds 12.
    assert windows(Sliding(10), [12, 5]) == [(2, 13, 2), (6, 17, 1)]
    # Coinciding L(t) and R(t - d - 1) are one window: times 0 and 11 give L(11) = R(0) = [1, 11].
    assert windows(Sliding(10), [0, 11]) == [(-10, 1, 1), (1, 12, 1)]


def test_sessions_merge_when_closer_than_the_gap() -> None:
    assert windows(Session(10), [0, 9]) == [(0, 19, 2)]
    assert windows(Session(10), [0, 10]) == [(0, 10, 1), (10, 20, 1)]
    assert windows(Session(11, grace_ms=20), [0, 20, 10]) == [(0, 31, 3)]  # 10 bridges two sessions
    assert windows(Session(11), [0, 20, 10]) == [(0, 11, 1), (20, 31, 1)]  # 20 closed [0, 11): 10 is late


def test_closing_and_lateness_follow_the_watermark_within_a_batch() -> None:
    op = WindowedAggregation(Tumbling(1000), Count())
    out = feed(op, ["a", "b", "a", "a", "a"], [0, 2000, 100, 1999, 2500])
    # 100 and 1999 are late: the record at 2000 already closed [0, 1000) and [1000, 2000)
    assert out.late.tolist() == [False, False, True, True, False]
    assert [(r.key, r.start_ms, r.end_ms, r.value) for r in out.results] == [("a", 0, 1000, 1)]
    assert out.watermark_ms == op.watermark(0) == 2500


def test_grace_and_allowed_lateness_both_delay_closing() -> None:
    op = WindowedAggregation(Tumbling(1000, grace_ms=200), Count(), allowed_lateness_ms=300)
    assert feed(op, ["a", "a"], [10, 1499]).results == []  # wm 1199 < 1000 + 200
    out = feed(op, ["a", "a"], [20, 1500])  # 20 joins [0, 1000); then wm = 1500 - 300 closes it
    assert out.late.tolist() == [False, False] and [r.value for r in out.results] == [2]
    assert feed(op, ["a"], [999]).late.tolist() == [True]


def test_session_record_touching_a_closed_session_is_late() -> None:
    op = WindowedAggregation(Session(10, grace_ms=5), Count())
    out = feed(op, ["k", "k"], [0, 15])  # wm 15 closes [0, 10) (10 + 5 <= 15)
    assert [(r.start_ms, r.end_ms) for r in out.results] == [(0, 10)]
    # 8 would extend the closed session: late, though its own span [8, 18) is still open.
    # 11 does not overlap [0, 10), so it joins [15, 25).
    out = feed(op, ["k", "k"], [8, 11])
    assert out.late.tolist() == [True, False]
    assert [(r.start_ms, r.end_ms, r.value) for r in op.advance(0, 100)] == [(11, 25, 2)]


def test_sliding_accepts_a_record_whose_own_window_closed_but_that_later_windows_contain() -> None:
    op = WindowedAggregation(Sliding(10), Count())
    feed(op, ["x"], [20])  # wm 20
    assert feed(op, ["k"], [9]).late.tolist() == [True]  # [9, 19], the last window that could hold it, closed
    out = feed(op, ["k"], [10])  # [10, 20] is still open, though L(10) = [0, 10] is closed
    assert out.late.tolist() == [False] and out.results == []
    assert feed(op, ["k"], [20]).late.tolist() == [False]
    results = sorted((r.key, r.start_ms, r.end_ms, r.value) for r in op.advance(0, 10**6))
    # L(20) = [10, 20] holds 10 and 20, R(10) = [11, 21] holds 20.
    assert results == [("k", 10, 21, 2), ("k", 11, 22, 1), ("x", 10, 21, 1)]


def test_update_mode_retracts_merged_sessions() -> None:
    op = WindowedAggregation(Session(11, grace_ms=20), Count(), "update")
    first = feed(op, ["k", "k"], [0, 20])
    assert sorted((r.start_ms, r.end_ms, r.value) for r in first.results) == [(0, 11, 1), (20, 31, 1)]
    bridged = feed(op, ["k", "k"], [10, 12])  # 12 lands inside: one update of the merged session
    assert sorted((r.start_ms, r.end_ms, r.value, r.tombstone) for r in bridged.results) == [
        (0, 11, None, True),
        (0, 31, 4, False),
        (20, 31, None, True),
    ]
    assert [r.value for r in feed(op, ["k"], [5]).results] == [5]  # same bounds: no retraction


def test_partitions_are_independent() -> None:
    op = WindowedAggregation(Tumbling(100), Count())
    feed(op, ["a"], [10_000], partition=1)
    out = feed(op, ["b"], [5], partition=2)  # partition 1's time does not make this late
    assert out.late.tolist() == [False] and op.watermark(1) == 10_000 and op.watermark(2) == 5
    assert op.partitions == {1, 2}
    op.drop(1)
    assert op.partitions == {2} and op.watermark(1) is None and op.changes(1) == {}


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="merge"):
        WindowedAggregation(Session(10), Aggregate(list, lambda a, v: [*a, v]))
    with pytest.raises(ValueError, match="emit"):
        WindowedAggregation(Tumbling(10), Count(), "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Hopping(10, 20)
    with pytest.raises(ValueError):
        Tumbling(0)
    for vectorize in (True, False):
        op = WindowedAggregation(Tumbling(10), Sum(), vectorize=vectorize)
        # The per-record engine names the failing row (RecordFoldError); the numpy one raises directly.
        with pytest.raises((TypeError, RecordFoldError), match="keys"):
            op.process(0, [1.5], np.array([1]), [1.0])
        with pytest.raises(ValueError):
            op.process(0, ["a", "b"], np.array([1, 2]), [1.0])
        with pytest.raises(ValueError):
            op.process(0, ["a"], np.array([1]), None)


def test_empty_batches_change_nothing() -> None:
    for vectorize in (True, False):
        op = WindowedAggregation(Hopping(10, 5), Count(), vectorize=vectorize)
        out = op.process(0, [], np.array([], dtype=np.int64))
        assert out.results == [] and out.late.shape == (0,) and out.watermark_ms is None
        assert op.changes(0) == {}
