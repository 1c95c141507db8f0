"""Counts per key in long tumbling windows with many keys: the state restore tests and benchmark
(issue 8). `STREAMSVC_TEST_STORE` picks the window store ("rocksdb" by default, or "memory"),
`STREAMSVC_TEST_WINDOW` the window ("tumbling" by default: resident in RocksDB; or "session": in
memory with a RocksDB copy)."""

from __future__ import annotations

import os
from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Count, Session, Tumbling

SIZE_MS = 3_600_000


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


topology = Topology("stored-counts")
(
    topology.source("input", value_serde=JsonSerde(), event_time=event_time)
    .window(
        "counts",
        Session(SIZE_MS) if os.environ.get("STREAMSVC_TEST_WINDOW") == "session" else Tumbling(SIZE_MS),
        Count(),
        store=os.environ.get("STREAMSVC_TEST_STORE", "rocksdb"),
    )
    .to("output", value_serde=JsonSerde())
)
