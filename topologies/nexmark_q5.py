"""Nexmark Q5-lite (BRIEF §4): bids counted per auction in 10 s windows hopping every 2 s, emitted final.

Input: JSON bids keyed by auction id, `{"auction", "bidder", "price", "date_time"}` (see bench/nexmark.py).
Output: per (auction, window) `{"start": ms, "end": ms, "value": count}`, keyed by auction id.
"""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Count, Hopping

WINDOW = Hopping(size_ms=10_000, advance_ms=2_000, grace_ms=1_000)


def bid_time(bid: dict[str, Any], _kafka_ts: int) -> int:
    return int(bid["date_time"])


topology = Topology("nexmark-q5-lite")
(
    topology.source("bids", value_serde=JsonSerde(), event_time=bid_time)
    .window("bids-per-auction", WINDOW, Count(), key_format="legacy")
    .to("bid_counts", value_serde=JsonSerde())
)
