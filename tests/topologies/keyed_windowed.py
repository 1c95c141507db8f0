"""A keyed transform and a tumbling count from one validated source, with a DLQ: the fault-point tests'
topology (issue 7). Event time is the `t` field."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.validation import not_null
from streamsvc.windows import Count, Tumbling

WINDOW_MS = 1_000


def transform(value: dict[str, Any]) -> dict[str, Any]:
    return {"id": value["id"], "sq": value["n"] * value["n"]}


topology = Topology("keyed-windowed")
source = topology.source(
    "input", value_serde=JsonSerde(), expectations=[not_null("id")], event_time=lambda v, _ts: int(v["t"])
)
source.map(transform).to("output", value_serde=JsonSerde())
source.window("counts", Tumbling(WINDOW_MS), Count(), key_format="legacy").to(
    "windows", value_serde=JsonSerde()
)
