"""The offline oracle of the shop pipeline: from the generated events alone (pure Python, no Kafka), what
every output topic, dead-letter topic and Iceberg table must hold, with the engine's semantics
(`streamsvc.windows.reference` for windows and lateness; one partition per topic, so record order is
production order).

    from oracle import expected            # topologies/shop on sys.path
    want = expected(shop_events(ShopConfig(seed=7)))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import orjson
from logic import (  # type: ignore[import-not-found]
    ATTRIBUTION_MS,
    REVENUE_1M,
    REVENUE_5M,
    REVENUE_AGG,
    SESSION,
    SESSION_AGG,
    attribute,
    enrich,
    normalise_click,
    order_fact,
)

from streamsvc.generate.shop import CLICKS, CUSTOMERS, ORDERS, POISON, Event
from streamsvc.serde.debezium import ChangeRecord
from streamsvc.windows.aggregations import Aggregate
from streamsvc.windows.reference import Expected, Rec, fixed, session
from streamsvc.windows.spec import WindowSpec


def canonical(value: Any) -> bytes:
    """A value's identity for multiset comparisons (key order does not matter)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass
class Expectation:
    """What the shop pipeline and its sinks must produce. Outputs are multisets of canonical values."""

    outputs: dict[str, Counter[bytes]] = field(default_factory=dict)
    dlq: dict[str, Counter[str]] = field(default_factory=dict)
    """Source topic -> stage -> count (dead letters written by the pipeline)."""
    silver: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """`customers`/`orders` -> id -> current row."""
    bronze: dict[str, int] = field(default_factory=dict)
    """`customers`/`orders` -> changelog rows (every decodable change, tombstones included)."""
    late: int = 0

    def gold(self, topic: str) -> Counter[bytes]:
        return self.outputs[topic]


def _fold(agg: Aggregate) -> Any:
    return lambda values: reduce(agg.add, values, agg.init())


def _closed(result: Expected) -> Counter[bytes]:
    return Counter(
        canonical({"window_start": start, "window_end": end, **value})
        for (_key, start, end), value in result.closed.items()
    )


def _windows(recs: list[Rec], spec: WindowSpec, agg: Aggregate) -> Expected:
    if recs and spec is SESSION:
        return session({0: recs}, spec, _fold(agg), 0)
    return fixed({0: recs}, spec, _fold(agg), 0)  # type: ignore[arg-type]


def _apply(state: dict[int, dict[str, Any]], change: ChangeRecord, key: bytes, tier: bool) -> None:
    ident = orjson.loads(key)["id"]
    if change.is_delete:
        state.pop(ident, None)
    elif change.op in ("c", "u", "r") and change.after is not None:
        state[ident] = {**change.after, **({"tier": change.after.get("tier")} if tier else {})}


def expected(events: Sequence[Event]) -> Expectation:
    """The expectation for `events` (the generator's output, in production order)."""
    want = Expectation(dlq={CLICKS: Counter(), ORDERS: Counter()})
    profiles: dict[int, dict[str, Any]] = {}
    clicks: list[dict[str, Any]] = []
    enriched: Counter[bytes] = Counter()
    facts: list[dict[str, Any]] = []
    silver: dict[str, dict[int, dict[str, Any]]] = {"customers": {}, "orders": {}}
    bronze: Counter[str] = Counter()
    for ev in events:
        if ev.poison is not None:
            topic, stage = POISON[ev.poison]
            want.dlq[topic][stage] += 1
            continue
        if ev.topic == CLICKS:
            click = normalise_click(ev.value)
            clicks.append(click)
            enriched[canonical(enrich(click, profiles.get(click["user_id"])))] += 1
            continue
        change = ChangeRecord.from_envelope(ev.value)
        table = "customers" if ev.topic == CUSTOMERS else "orders"
        bronze[table] += 1
        _apply(silver[table], change, ev.key, tier=table == "customers")
        if table == "customers" and change.after is not None:
            profiles[change.after["id"]] = change.after
        if table == "orders" and change.op == "c":
            facts.append(order_fact(change))
    want.outputs["shop.clicks_enriched"] = enriched

    recs = [Rec(i, c["user_id"], c["ts"], c) for i, c in enumerate(clicks)]
    sessions = _windows(recs, SESSION, SESSION_AGG)
    want.late = len(sessions.late)
    want.dlq[CLICKS]["late"] += want.late
    want.outputs["shop.click_sessions"] = _closed(sessions)
    orders = [Rec(i, f["country"], f["ts"], f) for i, f in enumerate(facts)]
    want.outputs["shop.revenue_1m"] = _closed(_windows(orders, REVENUE_1M, REVENUE_AGG))
    want.outputs["shop.revenue_5m"] = _closed(_windows(orders, REVENUE_5M, REVENUE_AGG))

    by_user: dict[int, list[dict[str, Any]]] = {}
    for c in clicks:
        by_user.setdefault(c["user_id"], []).append(c)
    want.outputs["shop.orders_attributed"] = Counter(
        canonical(attribute(f, c))
        for f in facts
        for c in by_user.get(f["customer_id"], [])
        if f["ts"] - ATTRIBUTION_MS <= c["ts"] <= f["ts"]
    )
    want.silver = silver
    want.bronze = dict(bronze)
    return want
