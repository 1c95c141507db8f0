"""The observability tests' topology: every outcome (emitted, filtered, dead-lettered at each stage, late)
on demand, and a stall switch for fault injection.

input (JSON, expectation not_null("id"))
  -- "w": true --> tumbling 1 s count per key --> counts      (records behind the watermark are late)
  -- otherwise --> stall? --> drop? (filtered) --> transform (raises on "boom") --> output
A record with "stall": true blocks the poll loop while the file named by $OBSERVED_STALL_FILE exists.
"""

from __future__ import annotations

import os
import time
from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.validation import not_null
from streamsvc.windows import Count, Tumbling


class Boom(Exception):
    """Raised by `transform` for records asking for it (DLQ stage `process`)."""


def stall(_key: Any, value: dict[str, Any]) -> None:
    path = os.environ.get("OBSERVED_STALL_FILE", "")
    while value.get("stall") and path and os.path.exists(path):
        time.sleep(0.05)


def transform(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("boom"):
        raise Boom(f"record {value['id']} asked for it")
    return {"id": value["id"], "t": value["t"]}


topology = Topology("observed")
src = topology.source(
    "input", value_serde=JsonSerde(), expectations=[not_null("id")], event_time=lambda v, _ts: int(v["t"])
)
routes = src.branch(windowed=lambda v: bool(v.get("w")), default="plain")
routes["windowed"].window("counts", Tumbling(1_000), Count(), key_format="legacy").to(
    "counts", value_serde=JsonSerde()
)
(
    routes["plain"]
    .peek(stall)
    .filter(lambda v: not v.get("drop"))
    .map(transform)
    .to("output", value_serde=JsonSerde())
)
