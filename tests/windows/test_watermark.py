"""WatermarkTracker: per-partition watermarks, the agent minimum, idleness and wall-clock fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsvc.windows import WatermarkTracker


class Clock:
    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_partition_watermark_is_max_event_time_minus_lateness() -> None:
    tracker = WatermarkTracker(allowed_lateness_ms=100)
    tracker.assign([0])
    assert tracker.partition_watermark(0) is None
    assert tracker.observe(0, np.array([500, 300])) == 400
    assert tracker.observe(0, [200]) == 400  # never goes back
    assert tracker.observe(0, []) == 400


def test_agent_watermark_is_min_over_partitions() -> None:
    tracker = WatermarkTracker()
    tracker.assign([0, 1])
    tracker.observe(0, [1000])
    assert tracker.agent_watermark() is None  # partition 1 has no records yet and is not idle
    tracker.observe(1, [400])
    assert tracker.agent_watermark() == 400
    tracker.observe(1, [1500])
    assert tracker.agent_watermark() == 1000


def test_idle_partition_stops_holding_the_watermark_back() -> None:
    clock = Clock()
    tracker = WatermarkTracker(idle_timeout_ms=5000, clock=clock)
    tracker.assign([0, 1])
    tracker.observe(0, [100])
    tracker.observe(1, [10_000])
    assert tracker.agent_watermark() == 100
    clock.now = 4999
    tracker.observe(1, [11_000])
    assert not tracker.is_idle(0) and tracker.agent_watermark() == 100
    clock.now = 5000
    assert tracker.is_idle(0) and not tracker.is_idle(1)
    assert tracker.agent_watermark() == 11_000
    # A partition assigned with no records is idle after the timeout too.
    tracker.assign([2])
    assert tracker.agent_watermark() == 11_000  # it holds the watermark at its last value meanwhile
    clock.now = 10_000
    assert tracker.is_idle(2)
    # Records wake partition 0 up; the agent watermark never decreases.
    tracker.observe(0, [200])
    assert not tracker.is_idle(0)
    assert tracker.agent_watermark() == 11_000


def test_all_idle_uses_the_largest_partition_watermark_or_the_wall_clock() -> None:
    clock, wall = Clock(), Clock(50_000)
    plain = WatermarkTracker(idle_timeout_ms=10, clock=clock, wall_clock=wall)
    fallback = WatermarkTracker(
        allowed_lateness_ms=1000, idle_timeout_ms=10, wall_clock_fallback=True, clock=clock, wall_clock=wall
    )
    for tracker in (plain, fallback):
        tracker.assign([0, 1])
        tracker.observe(0, [100])
        tracker.observe(1, [3000])
    assert plain.agent_watermark() == 100
    assert fallback.agent_watermark() == -900
    clock.now = 10
    assert plain.agent_watermark() == 3000
    assert fallback.agent_watermark() == 49_000
    wall.now = 60_000
    assert fallback.agent_watermark() == 59_000


def test_wall_clock_fallback_without_partitions_or_records() -> None:
    tracker = WatermarkTracker(
        wall_clock_fallback=True, wall_clock=Clock(7), idle_timeout_ms=1, clock=Clock()
    )
    assert tracker.agent_watermark() == 7
    assert WatermarkTracker().agent_watermark() is None


def test_assign_and_revoke() -> None:
    tracker = WatermarkTracker(allowed_lateness_ms=10)
    tracker.assign([0, 1], max_event_times={1: 510})
    assert tracker.partitions == {0, 1}
    assert tracker.partition_watermark(1) == 500
    tracker.observe(0, [100])
    assert tracker.agent_watermark() == 90
    tracker.revoke([0])
    assert tracker.partitions == {1}
    assert tracker.agent_watermark() == 500
    with pytest.raises(KeyError):
        tracker.observe(0, [1])
    with pytest.raises(ValueError):
        WatermarkTracker(idle_timeout_ms=0)


@given(st.lists(st.tuples(st.integers(0, 2), st.lists(st.integers(-1000, 1000), max_size=5)), max_size=30))
def test_agent_watermark_is_monotone_and_bounded(batches: list[tuple[int, list[int]]]) -> None:
    tracker = WatermarkTracker(allowed_lateness_ms=5)
    tracker.assign([0, 1, 2])
    previous = None
    for p, times in batches:
        tracker.observe(p, times)
        wm = tracker.agent_watermark()
        if previous is not None:
            assert wm is not None and wm >= previous
        marks = [tracker.partition_watermark(q) for q in (0, 1, 2)]
        if None not in marks and wm is not None:
            assert wm <= max(m for m in marks if m is not None)
        previous = wm
