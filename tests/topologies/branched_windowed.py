"""Keyed events split in two: kind "w" counted per key in tumbling event-time windows (late ones to the
DLQ), the others transformed 1:1. Undecodable or invalid records go to the DLQ. Used by the cluster
failover, rolling-restart and scale-out tests."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.validation import in_range, not_null
from streamsvc.windows import Count, Tumbling

SIZE_MS, GRACE_MS = 1_000, 500


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


def transform(value: dict[str, Any]) -> dict[str, Any]:
    return {"id": value["id"], "sq": value["n"] * value["n"], "tag": f"k{value['id'] % 97}"}


topology = Topology("branched-windowed")
branches = topology.source(
    "input",
    value_serde=JsonSerde(),
    event_time=event_time,
    expectations=[not_null("t"), in_range("n", 0, 1_000_000)],
).branch(windowed=lambda v: v["kind"] == "w", default="plain")
branches["windowed"].window("counts", Tumbling(SIZE_MS, grace_ms=GRACE_MS), Count(), key_format="legacy").to(
    "windows", value_serde=JsonSerde()
)
branches["plain"].map(transform).to("output", value_serde=JsonSerde())
