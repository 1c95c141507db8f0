"""Counts per key in tumbling event-time windows; used by the windowed runtime tests."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Count, Tumbling

SIZE_MS, GRACE_MS = 1_000, 500


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


topology = Topology("windowed-count")
(
    topology.source("input", value_serde=JsonSerde(), event_time=event_time)
    .window("counts", Tumbling(SIZE_MS, grace_ms=GRACE_MS), Count(), key_format="legacy")
    .to("output", value_serde=JsonSerde())
)
