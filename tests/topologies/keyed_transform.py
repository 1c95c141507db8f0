"""A keyed 1:1 transform used by the crash, fencing and SIGTERM tests."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology


def transform(value: dict[str, Any]) -> dict[str, Any]:
    return {"id": value["id"], "sq": value["n"] * value["n"], "tag": f"k{value['id'] % 97}"}


topology = Topology("keyed-transform")
topology.source("input", value_serde=JsonSerde()).map(transform).to("output", value_serde=JsonSerde())
