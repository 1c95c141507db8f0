"""Revenue per customer in tumbling event-time windows, orders priced by a CDC customers table (joined as
a global table): the replay-determinism application of the reset-app tests."""

from __future__ import annotations

from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Sum, Tumbling

SIZE_MS, GRACE_MS = 1_000, 300


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


def price(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    rate = customer["rate"] if customer else 0
    return {"amount": order["qty"] * rate}


topology = Topology("revenue")
customers = topology.global_table("customers")
(
    topology.source("orders", value_serde=JsonSerde(), event_time=event_time)
    .join(customers, price, how="left")
    .window(
        "revenue",
        Tumbling(SIZE_MS, grace_ms=GRACE_MS),
        Sum("int64"),
        value=lambda v: v["amount"],
        key_format="legacy",  # record key + {start, end, value}: the sink's rows carry the window
    )
    .to("revenue", value_serde=JsonSerde())
)
