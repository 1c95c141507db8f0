"""The reference shop pipeline (docs/demo.md): CDC customers and orders (Avro via the registry) and JSON
clicks in; enrichment, windows, joins and a repartitioned aggregation out; Iceberg sinks in `sinks.py`.

    shop.clicks --validate--> normalise --join customers (table)--> shop.clicks_enriched
                                 |                               \\-> session window -> shop.click_sessions
                                 \\----------------------------------\\
    shop.public.orders --created--> fact --select_key--> interval join (30 min) -> shop.orders_attributed
                                      \\--group_by country--> 1-min tumbling -> shop.revenue_1m
                                                           \\-> 5-min hopping -> shop.revenue_5m
Bad records go to `<source>.dlq`; late clicks (session window) to the DLQ with stage `late`.
"""

from __future__ import annotations

from logic import (  # type: ignore[import-not-found]
    ATTRIBUTION_MS,
    CLICK_EXPECTATIONS,
    JOIN_GRACE_MS,
    REVENUE_1M,
    REVENUE_5M,
    REVENUE_AGG,
    SESSION,
    SESSION_AGG,
    attribute,
    by_customer,
    click_time,
    enrich,
    flatten,
    is_created,
    normalise_click,
    order_fact,
    order_time,
)

from streamsvc.generate.shop import CLICKS, CUSTOMERS, ORDERS
from streamsvc.serde import AvroSerde, DebeziumSerde, JsonSerde, StringSerde
from streamsvc.topology import Topology

OUTPUTS = (
    "shop.clicks_enriched",
    "shop.click_sessions",
    "shop.orders_attributed",
    "shop.revenue_1m",
    "shop.revenue_5m",
)

topology = Topology("shop")
customers = topology.table(CUSTOMERS, DebeziumSerde(AvroSerde(None)), name="customers")
clicks = topology.source(CLICKS, JsonSerde(), expectations=CLICK_EXPECTATIONS, event_time=click_time)
valid = clicks.map(normalise_click)
enriched = valid.join(customers, enrich, how="left").to("shop.clicks_enriched", JsonSerde())
(
    enriched.window("click-sessions", SESSION, SESSION_AGG, key_format="legacy")
    .map(flatten)
    .to("shop.click_sessions", JsonSerde())
)

orders = topology.source(ORDERS, DebeziumSerde(AvroSerde(None)), event_time=order_time)
created = orders.filter(is_created).map(order_fact)
(
    created.select_key(by_customer)
    .interval_join(valid, "orders-clicks", ATTRIBUTION_MS, 0, attribute, grace_ms=JOIN_GRACE_MS)
    .to("shop.orders_attributed", JsonSerde())
)
by_country = created.group_by("country", name="orders-by-country", key_serde=StringSerde())
for name, window, topic in (
    ("revenue-1m", REVENUE_1M, "shop.revenue_1m"),
    ("revenue-5m", REVENUE_5M, "shop.revenue_5m"),
):
    (
        by_country.window(name, window, REVENUE_AGG, key_format="legacy")
        .map(flatten)
        .to(topic, JsonSerde(), key_serde=StringSerde())
    )
