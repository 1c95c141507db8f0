"""bench/run's statistics and correctness gate (bench/stats.py): pure functions, no broker, no timing."""

from __future__ import annotations

import math

from bench import stats


def _oracle() -> stats.Oracle:
    # partition 0: auction 1 from t=0 to t=12_000 closes the windows starting at -8000 .. 0
    # (end + grace = start + 11_000 <= 12_000); partition 1 ends earlier, at t=11_500.
    return stats.oracle({0: [(1, 0), (1, 5_000), (1, 12_000)], 1: [(2, 500), (2, 11_500)]})


def test_oracle_counts_every_hopping_window_and_knows_which_are_closed() -> None:
    o = _oracle()
    assert o.counts[("1", 0)] == 2  # t=0 and t=5000 fall in [0, 10000)
    assert o.counts[("1", -8_000)] == 1
    assert o.counts[("1", 4_000)] == 2  # t=5000 and t=12000 fall in [4000, 14000)
    assert o.counts[("1", 10_000)] == 1
    assert o.final_wm == {0: 12_000, 1: 11_500}
    assert o.closed(("1", 0)) and not o.closed(("1", 2_000))
    assert o.closed(("2", 0)) and not o.closed(("2", 2_000))


def test_records_later_than_the_grace_are_dropped() -> None:
    o = stats.oracle({0: [(1, 20_000), (1, 8_000)]})  # 12 s late: every window of t=8000 has closed
    assert ("1", 0) not in o.counts


def test_gate_passes_exactly_the_closed_windows() -> None:
    o = _oracle()
    emitted = [(k, s, s + stats.SIZE, n) for (k, s), n in o.counts.items() if o.closed((k, s))]
    verdict = stats.gate(o, emitted)
    assert verdict.ok and verdict.emitted == len(emitted)


def test_gate_fails_wrong_duplicate_missing_and_early_results() -> None:
    o = _oracle()
    closed = [(k, s, s + stats.SIZE, n) for (k, s), n in o.counts.items() if o.closed((k, s))]
    first = closed[0]
    wrong = [(first[0], first[1], first[2], first[3] + 1), *closed[1:]]
    assert "wrong counts" in stats.gate(o, wrong).text
    assert "more than once" in stats.gate(o, [*closed, first]).text
    assert "missing" in stats.gate(o, closed[1:]).text
    open_window = next(w for w in o.counts if not o.closed(w))
    early = [*closed, (open_window[0], open_window[1], open_window[1] + stats.SIZE, o.counts[open_window])]
    assert "before they closed" in stats.gate(o, early).text
    assert not stats.gate(o, [(first[0], first[1], first[1] + 1, first[3]), *closed[1:]]).ok


def test_windows_closed_only_by_their_own_partitions_watermark_may_be_absent() -> None:
    o = stats.oracle({0: [(1, 0), (1, 13_000)], 1: [(2, 0), (2, 11_000)]})
    w = ("1", 0)  # closes at 11_000: closed in partition 0 (13_000), only reached by partition 1 (11_000)
    assert o.closed(w) and not o.required(w)
    assert o.required(("1", -2_000))
    emitted = [(k, s, s + stats.SIZE, n) for (k, s), n in o.counts.items() if o.required((k, s))]
    assert stats.gate(o, emitted).ok


def test_spread_is_the_median_with_min_and_max_leaving_out_nan() -> None:
    s = stats.spread([3.0, 1.0, math.nan, 2.0])
    assert (s.median, s.lo, s.hi) == (2.0, 1.0, 3.0)
    assert stats.spread([1.0, 4.0]).median == 2.5
    assert math.isnan(stats.spread([]).median)
    assert stats.spread([5.0, 1.0, 3.0]).fmt(",.0f") == "3 (1-5)"
    assert stats.Spread(7.0, 7.0, 7.0).fmt(",.0f") == "7"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile([5.0], 99) == 5.0
    assert math.isnan(stats.percentile([], 99))


def test_interpolate_and_rotation() -> None:
    series = [(0.0, 0.0), (1.0, 10.0), (2.0, 10.0)]
    assert stats.interpolate(series, 0.5) == 5.0
    assert stats.interpolate(series, -1.0) == 0.0 and stats.interpolate(series, 9.0) == 10.0
    assert stats.rotation(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert stats.rotation(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert stats.rotation(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_closing_times_are_the_append_time_of_the_record_that_moves_the_watermark_past_the_close() -> None:
    closing = stats.closing_times(
        {0: [(1, 0, 100.0), (1, 10_500, 101.0), (1, 11_000, 102.0), (1, 11_200, 103.0)]}
    )
    assert closing[("1", 0)] == 102.0  # closes at 11_000
    assert ("1", 2_000) not in closing  # closes at 13_000: never


def test_closed_by_wall_clock_closes_and_requires_every_window() -> None:
    o = stats.closed_by_wall_clock(_oracle())
    assert o.counts == _oracle().counts
    assert o.n_closed == o.n_required == len(o.counts)
    emitted = [(k, s, s + stats.SIZE, n) for (k, s), n in o.counts.items()]
    assert stats.gate(o, emitted).ok
    assert not stats.gate(o, emitted[1:]).ok  # the windows left open by the watermark are required too
