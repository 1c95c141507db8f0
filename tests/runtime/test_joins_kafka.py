"""Stream-table join through the real broker: a CDC table with inserts, updates, deletes and tombstones,
an order stream enriched with the current row, results equal to an oracle; state survives restarts
(restored from the changelog); co-partitioning is checked at start-up."""

from __future__ import annotations

import random
import threading
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.errors import TopologyError
from streamsvc.runtime.agent import Agent
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology

PARTITIONS = 3


def enrich(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    return {"order": order["id"], "customer": None if customer is None else customer["name"]}


def build(kind: str = "memory") -> Topology:
    topology = Topology("orders-enriched")
    customers = (
        topology.global_table("customers") if kind == "global" else topology.table("customers", store=kind)
    )
    topology.source("orders", value_serde=JsonSerde()).join(customers, enrich, how="left").to(
        "enriched", value_serde=JsonSerde()
    )
    return topology


def envelope(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bytes:
    return orjson.dumps({"op": op, "before": before, "after": after, "source": {"ts_ms": 1}, "ts_ms": 2})


def change_log(
    rng: random.Random, table: dict[int, dict[str, Any]], n: int
) -> list[tuple[int, bytes | None]]:
    """Random CDC changes applied to `table` (the oracle); (customer id, Debezium value or None)."""
    out: list[tuple[int, bytes | None]] = []
    for _ in range(n):
        cid = rng.randrange(40)
        row = table.get(cid)
        roll = rng.random()
        if row is None:
            new = {"id": cid, "name": f"c{cid}-v{rng.randrange(1000)}"}
            out.append((cid, envelope("c", None, new)))
            table[cid] = new
        elif roll < 0.5:
            new = {**row, "name": f"c{cid}-v{rng.randrange(1000)}"}
            out.append((cid, envelope("u", row, new)))
            table[cid] = new
        elif roll < 0.8:
            out.append((cid, envelope("d", row, None)))
            out.append((cid, None))  # Debezium's tombstone after a delete
            del table[cid]
        else:
            out.append((cid, None))  # a bare tombstone also removes the row
            del table[cid]
    return out


def produce_keyed(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None]], partitions: int = PARTITIONS
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for cid, value in records:
        producer.produce(topic, value, str(cid).encode(), partition=cid % partitions)
    assert producer.flush(30) == 0


def run_until_caught_up(settings: Settings, kind: str = "memory") -> Worker:
    worker = Worker([build(kind)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    return worker


@pytest.mark.parametrize("kind", ["memory", "disk", "global"])
def test_stream_table_join_equals_oracle_across_restarts(bootstrap: str, names, kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A global table needs no co-partitioning: give it another partition count and another key spread.
    table_partitions = 2 if kind == "global" else PARTITIONS
    customers, orders = names.topic("customers", table_partitions), names.topic("orders", PARTITIONS)
    app = names("app")
    names.track(
        names("enriched"), customers + ".dlq", orders + ".dlq", f"{app}.orders-enriched.customers.changelog"
    )
    topics = {"customers": customers, "orders": orders, "enriched": names("enriched")}
    settings = Settings(
        app_id=app, bootstrap_servers=bootstrap, instance_id="j-0", topics=topics, state_dir=str(tmp_path)
    )
    rng = random.Random(7)
    table: dict[int, dict[str, Any]] = {}
    expected: list[dict[str, Any]] = []
    next_order = 0
    for phase in range(3):
        # Table changes first, processed to the end; then orders, which see exactly that table.
        produce_keyed(bootstrap, customers, change_log(rng, table, 60), table_partitions)
        run_until_caught_up(settings, kind)
        batch = []
        for _ in range(150):
            cid = rng.randrange(40)
            batch.append((cid, orjson.dumps({"id": next_order, "customer_id": cid})))
            row = table.get(cid)
            expected.append({"order": next_order, "customer": None if row is None else row["name"]})
            next_order += 1
        produce_keyed(bootstrap, orders, batch)
        worker = run_until_caught_up(settings, kind)  # new worker: the table comes from the changelog
        assert worker.agents[0].totals.balanced(), phase
    got = sorted(
        (orjson.loads(m.value()) for m in read_all(bootstrap, names("enriched"))), key=lambda r: r["order"]
    )
    assert got == expected
    assert any(r["customer"] is None for r in got) and any(r["customer"] for r in got)
    if kind == "disk":
        # The files are removed when partitions are revoked at shutdown; their directory stays.
        assert (tmp_path / app / "j-0" / "orders-enriched" / "customers").is_dir()


def test_mismatched_partition_counts_are_refused(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    customers, orders = names.topic("customers", 3), names.topic("orders", 2)
    topics = {"customers": customers, "orders": orders, "enriched": names("enriched")}
    settings = Settings(app_id=names("app"), bootstrap_servers=bootstrap, instance_id="j-1", topics=topics)
    with pytest.raises(
        TopologyError, match=r"not co-partitioned.*2 partitions.*3 partitions|3 partitions.*2 part"
    ):
        Agent(build(), settings).run(threading.Event())
