"""The internal topics a topology needs (for the runtime, `streamsvc topics create|plan`, reset-app),
automatic repartitioning in the model, and the consumer group of stateful agents (pure tests)."""

from __future__ import annotations

import pytest

from streamsvc.config import Settings
from streamsvc.errors import TopologyError
from streamsvc.runtime.internal_topics import agent_group_id, internal_topics
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.topology.model import RepartitionOp
from streamsvc.windows import Count, Tumbling

S = Settings(app_id="shop")


def test_every_stateful_operator_after_select_key_repartitions_first() -> None:
    t = Topology("orders")
    customers = t.table("customers")
    orders = t.source("orders", JsonSerde())
    payments = t.source("payments", JsonSerde()).select_key(lambda k, v: v["order"].encode())
    rekeyed = orders.select_key(lambda k, v: v["customer"].encode()).map(lambda v: v)
    rekeyed.join(customers, lambda o, c: o).to("enriched", JsonSerde())
    rekeyed.window("per-customer", Tumbling(1_000), Count()).to("counts", JsonSerde())
    orders.interval_join(payments, "paid", 0, 1_000, lambda o, p: o).to("paid", JsonSerde())
    orders.group_by("region", name="by-region", partitions=3).window("per-region", Tumbling(1), Count())
    planned = internal_topics(t, S, {"orders": 6, "payments": 6, "customers": 2})
    assert [(p.name, p.partitions, p.kind) for p in planned] == [
        ("shop-customers-join-repartition", 2, "repartition"),  # co-partitioned with the table
        ("shop-per-customer-repartition", 6, "repartition"),
        ("shop-by-region-repartition", 3, "repartition"),
        ("shop-paid-right-repartition", 6, "repartition"),
        ("shop.orders.per-customer.changelog", 6, "changelog"),
        ("shop.orders.per-region.changelog", 3, "changelog"),
        ("shop.orders.customers.changelog", 2, "changelog"),
        ("shop.orders.paid.changelog", 6, "changelog"),
    ]
    assert all(
        p.config["cleanup.policy"] == ("delete" if p.kind == "repartition" else "compact") for p in planned
    )
    assert agent_group_id(t, S) == "shop-orders"


def test_stateless_agents_share_the_app_group_and_names_are_checked() -> None:
    t = Topology("clean")
    src = t.source("in", JsonSerde())
    src.map(lambda v: v).to("out", JsonSerde())
    assert agent_group_id(t, Settings(app_id="a", group_id="g")) == "g"
    assert internal_topics(t, S, {"in": 1}) == []
    src.repartition("r")
    with pytest.raises(TopologyError, match="used twice"):
        src.repartition("r")
    with pytest.raises(TopologyError, match="positive"):
        src.repartition("x", partitions=0)
    with pytest.raises(TopologyError, match="key_format"):
        src.window("w", Tumbling(1), Count(), key_format="avro")  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="store"):
        src.window("w", Tumbling(1), Count(), store="redis")
    assert isinstance(src.children[-1].op, RepartitionOp)
    with pytest.raises(TopologyError, match="partition counts"):
        internal_topics(t, S, {})
