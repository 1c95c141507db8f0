"""Nexmark Q5-lite with the window state resident in RocksDB (`store="rocksdb"`), for bench/q5.py."""

from __future__ import annotations

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Count
from topologies.nexmark_q5 import WINDOW, bid_time

topology = Topology("nexmark-q5-lite")
(
    topology.source("bids", value_serde=JsonSerde(), event_time=bid_time)
    .window("bids-per-auction", WINDOW, Count(), key_format="legacy", store="rocksdb")
    .to("bid_counts", value_serde=JsonSerde())
)
