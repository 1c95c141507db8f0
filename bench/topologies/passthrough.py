"""Benchmark topologies: bytes passthrough, and a JSON decode -> map -> encode variant."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import BytesSerde, JsonSerde
from streamsvc.topology import Topology

passthrough = Topology("bench-passthrough")
passthrough.source("input", value_serde=BytesSerde()).to("output", value_serde=BytesSerde())


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    event["price_cents"] = int(event["price"] * 100)
    return event


json_map = Topology("bench-json-map")
json_map.source("input", value_serde=JsonSerde()).map(enrich).to("output", value_serde=JsonSerde())
