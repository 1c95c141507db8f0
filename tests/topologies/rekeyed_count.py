"""Counts per user in tumbling windows, from records keyed by something else: `select_key` then a
window, so the runtime repartitions through `<app_id>-per-user-repartition` (issue 8)."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Count, Tumbling

SIZE_MS, GRACE_MS = 1_000, 60_000


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


topology = Topology("rekeyed-count")
(
    topology.source("input", value_serde=JsonSerde(), event_time=event_time)
    .select_key(lambda _key, value: value["user"])
    .window("per-user", Tumbling(SIZE_MS, grace_ms=GRACE_MS), Count())
    .to("output", value_serde=JsonSerde())
)
