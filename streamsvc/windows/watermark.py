"""Agent-level watermarks (BRIEF §3.4): per partition, and the minimum over active partitions.

Window closing uses each partition's own watermark (see `streamsvc.windows.operator`); this tracker
gives the agent's watermark for metrics (watermark lag) and for deciding when a quiet partition
should stop holding things back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import numpy.typing as npt


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class WatermarkTracker:
    """Per partition: ``max event time seen - allowed_lateness_ms``. Agent: the minimum over assigned
    partitions that are not idle.

    A partition is idle once `clock` has advanced ``idle_timeout_ms`` past its last record (or its
    assignment); ``None`` disables idleness. An active partition that has seen no record yet holds the
    agent watermark at its previous value. When every assigned partition is idle, the agent watermark
    is the largest partition watermark, or with ``wall_clock_fallback`` at least ``wall_clock() -
    allowed_lateness_ms`` (for sources whose event time tracks wall time). The agent watermark never
    decreases. Clocks return milliseconds: `clock` is monotonic (idleness), `wall_clock` epoch time.
    """

    def __init__(
        self,
        allowed_lateness_ms: int = 0,
        idle_timeout_ms: int | None = None,
        wall_clock_fallback: bool = False,
        *,
        clock: Callable[[], int] = _monotonic_ms,
        wall_clock: Callable[[], int] = _wall_ms,
    ) -> None:
        if allowed_lateness_ms < 0:
            raise ValueError("allowed_lateness_ms must be >= 0")
        if idle_timeout_ms is not None and idle_timeout_ms <= 0:
            raise ValueError("idle_timeout_ms must be > 0 or None")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.wall_clock_fallback = wall_clock_fallback
        self._clock, self._wall_clock = clock, wall_clock
        self._max: dict[int, int | None] = {}
        self._last_seen: dict[int, int] = {}
        self._agent: int | None = None

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._max)

    def assign(self, partitions: Iterable[int], max_event_times: Mapping[int, int] | None = None) -> None:
        """Start tracking partitions, optionally with their restored max event time."""
        now = self._clock()
        for p in partitions:
            restored = None if max_event_times is None else max_event_times.get(p)
            self._max[p] = restored if p not in self._max else self._combine(self._max[p], restored)
            self._last_seen[p] = now

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._max.pop(p, None)
            self._last_seen.pop(p, None)

    @staticmethod
    def _combine(a: int | None, b: int | None) -> int | None:
        return b if a is None else a if b is None else max(a, b)

    def observe(self, partition: int, event_times: npt.ArrayLike) -> int | None:
        """Record a batch's event times (an empty batch changes nothing); the partition's watermark."""
        if partition not in self._max:
            raise KeyError(f"partition {partition} is not assigned")
        times = np.asarray(event_times, dtype=np.int64).reshape(-1)
        if len(times):
            self._max[partition] = self._combine(self._max[partition], int(times.max()))
            self._last_seen[partition] = self._clock()
        return self.partition_watermark(partition)

    def partition_watermark(self, partition: int) -> int | None:
        """``max event time - allowed lateness``; None before the partition's first record."""
        m = self._max[partition]
        return None if m is None else m - self.allowed_lateness_ms

    def is_idle(self, partition: int) -> bool:
        if self.idle_timeout_ms is None:
            return False
        return self._clock() - self._last_seen[partition] >= self.idle_timeout_ms

    def agent_watermark(self) -> int | None:
        """Min over active partitions (see the class docstring); None until there is one."""
        active = [p for p in self._max if not self.is_idle(p)]
        candidate: int | None
        if active:
            marks = [self.partition_watermark(p) for p in active]
            candidate = None if None in marks else min(m for m in marks if m is not None)
        else:
            known = [m for p in self._max if (m := self.partition_watermark(p)) is not None]
            candidate = max(known) if known else None
            if self.wall_clock_fallback:
                candidate = self._combine(candidate, self._wall_clock() - self.allowed_lateness_ms)
        self._agent = self._combine(self._agent, candidate)
        return self._agent
