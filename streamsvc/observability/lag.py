"""Consumer lag per partition that holds under exactly-once, at-least-once and in the Iceberg sink.

librdkafka's own `consumer_lag` statistic is end offset minus the offset *the consumer* committed; under
exactly-once the offsets are committed by the producer (`send_offsets_to_transaction`) and by the
Iceberg sink into the table, so librdkafka never learns them and reports -1. Here the end offset comes
from the statistics (`ls_offset`, the last stable offset, for read_committed; `hi_offset`, the high
watermark, otherwise) and the committed position from the agent itself, so lag = end - committed, the
same number `kafka-consumer-groups.sh --describe` shows. A partition without a committed offset counts
from the log start (`lo_offset`), which is where `auto.offset.reset=earliest` starts it.

The gauge moves when statistics arrive (`statistics.interval.ms`, served by the poll loop): a stalled
poll loop freezes it, which the `no commit` and liveness alerts catch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from streamsvc.observability import metrics as m

TP = tuple[str, int]
STATISTICS_INTERVAL_MS = 1000


def partition_lag(end: int, committed: int | None, log_start: int) -> int:
    """Records from the committed position (or the log start when none) to `end`, never negative."""
    start = committed if committed is not None and committed >= 0 else log_start
    return max(0, end - max(start, 0))


def end_offsets_from_stats(stats: Mapping[str, Any], read_committed: bool) -> dict[TP, tuple[int, int]]:
    """(end offset, log start offset) per partition found in a librdkafka statistics document."""
    field = "ls_offset" if read_committed else "hi_offset"
    found: dict[TP, tuple[int, int]] = {}
    for topic, tstats in stats.get("topics", {}).items():
        for part, pstats in tstats.get("partitions", {}).items():
            if part == "-1":  # librdkafka's internal UA partition
                continue
            end = pstats.get(field, -1)
            if end is None or end < 0:
                continue
            found[(topic, int(part))] = (int(end), max(int(pstats.get("lo_offset", 0) or 0), 0))
    return found


class ConsumerLag:
    """Exports `streamsvc_consumer_lag_records` for one agent's consumer.

    `committed()` returns the agent's assigned partitions with their committed next offset (None when
    nothing is committed yet). Plug it into the consumer with `**lag.client_config()`.
    """

    def __init__(
        self,
        labels: Mapping[str, str],
        committed: Callable[[], Mapping[TP, int | None]],
        read_committed: bool = True,
        on_total: Callable[[int], None] | None = None,
    ) -> None:
        self.labels = dict(labels)
        self.committed = committed
        self.read_committed = read_committed
        self.on_total = on_total
        self._exported: set[TP] = set()
        self._ends: dict[TP, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def client_config(self) -> dict[str, Any]:
        """The librdkafka settings that deliver statistics to this tracker."""
        return {"stats_cb": self.on_stats, "statistics.interval.ms": STATISTICS_INTERVAL_MS}

    def on_stats(self, raw: str) -> None:
        """librdkafka `stats_cb` (runs inside poll/consume)."""
        ends = end_offsets_from_stats(orjson.loads(raw), self.read_committed)
        with self._lock:
            self._ends.update(ends)
        self.update()

    def snapshot(self) -> dict[TP, int]:
        """Lag per assigned partition whose end offset is known."""
        positions = dict(self.committed())
        with self._lock:
            return {
                tp: partition_lag(self._ends[tp][0], committed, self._ends[tp][1])
                for tp, committed in positions.items()
                if tp in self._ends
            }

    def update(self) -> None:
        """Set the gauges from the latest end offsets and positions; drop partitions no longer assigned."""
        lags = self.snapshot()
        with self._lock:
            for topic, partition in self._exported - set(lags):
                with contextlib.suppress(KeyError):
                    m.CONSUMER_LAG.remove(self.labels["app"], self.labels["agent"], topic, str(partition))
            for (topic, partition), lag in lags.items():
                m.CONSUMER_LAG.labels(**self.labels, topic=topic, partition=str(partition)).set(lag)
            self._exported = set(lags)
        if self.on_total is not None and lags:
            self.on_total(sum(lags.values()))
