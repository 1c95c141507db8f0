"""A topology with a bug at every DLQ stage (`v1`) and its fix (`v2`), for the DLQ inspect/re-drive tests.

events: JSON orders -> totals. v1 cannot decode the legacy `id=..;qty=..` format (decode), accepts
qty up to 100 (validate) and needs a price (process); v2 reads both formats, accepts qty up to 1000 and
defaults the price to 1. ticks: counts per key in 1 s event-time windows; v1 has no grace (late), v2 an
hour of it.
"""

from __future__ import annotations

from typing import Any

import orjson

from streamsvc.errors import MalformedPayloadError
from streamsvc.serde import JsonSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.topology import Topology
from streamsvc.validation.expectations import in_range
from streamsvc.windows import Count, Tumbling


class LegacyTolerantSerde(JsonSerde):
    """JSON, or the legacy `key=value;key=value` text with integer values."""

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        try:
            return super().deserialize(data, ctx)
        except MalformedPayloadError:
            assert data is not None
            return {k: int(v) for k, v in (part.split("=", 1) for part in data.decode().split(";"))}


def _total(order: dict[str, Any], default_price: int | None) -> dict[str, Any]:
    price = order["price"] if default_price is None else order.get("price", default_price)
    return {"id": order["id"], "total": order["qty"] * price}


def _build(fixed: bool) -> Topology:
    topology = Topology("poison")
    serde = LegacyTolerantSerde() if fixed else JsonSerde()
    max_qty = 1000 if fixed else 100
    (
        topology.source("events", value_serde=serde, expectations=[in_range("qty", 0, max_qty)])
        .map(lambda o: _total(o, 1 if fixed else None))
        .to("totals", value_serde=JsonSerde())
    )
    grace = 3_600_000 if fixed else 0
    (
        topology.source("ticks", value_serde=JsonSerde(), event_time=lambda v, _ts: int(v["t"]))
        .window("ticks", Tumbling(1_000, grace_ms=grace), Count(), key_format="legacy")
        .to("counts", value_serde=JsonSerde())
    )
    return topology


def v1() -> Topology:
    return _build(fixed=False)


def v2() -> Topology:
    return _build(fixed=True)


def order(i: int, qty: int = 2, price: int | None = 3) -> bytes:
    return orjson.dumps({"id": i, "qty": qty, **({"price": price} if price is not None else {})})
