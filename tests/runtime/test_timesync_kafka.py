"""Time-synchronised inputs (issue 8): a stream-table join and an interval join run twice on the same
input -- once with the table and right side produced far ahead of the stream, once far behind (a lag
skew far beyond the interval join's grace) -- and both runs equal each other and the oracle, which
processes the inputs in timestamp order. Without synchronisation (`max_task_idle_ms = -1`) the run
with the right side ahead differs: that is what the synchronisation fixes."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import orjson
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.runtime.topics import admin_client, end_offsets, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from tests.support import committed_offsets, wait_for

PARTITIONS, KEYS, AFTER_MS = 2, 8, 400
Row = tuple[bytes, int, bytes]  # key, timestamp, value


def build() -> Topology:
    top = Topology("synced")
    customers = top.table("customers")
    orders = top.source("orders", value_serde=JsonSerde())
    payments = top.source("payments", value_serde=JsonSerde())
    orders.join(customers, lambda o, row: {"order": o["id"], "tier": row and row["tier"]}, how="left").to(
        "enriched", value_serde=JsonSerde()
    )
    orders.interval_join(
        payments,
        "paid",
        before_ms=0,
        after_ms=AFTER_MS,
        combine=lambda o, p: {"order": o["id"], "pay": p["id"]},
    ).to("paid", value_serde=JsonSerde())
    return top


def generate(seed: int) -> dict[str, list[Row]]:
    """Each topic in timestamp order (so each partition is too); equal timestamps across topics."""
    rng = random.Random(seed)
    base = (int(time.time() * 1000) - 900_000) // 60_000 * 60_000
    key = lambda: f"c{rng.randrange(KEYS)}".encode()  # noqa: E731
    customers, orders, payments = [], [], []
    for i in range(300):
        cid, tier = key(), rng.randrange(5)
        env = {"op": "u", "before": None, "after": {"tier": tier}, "source": {"ts_ms": 1}, "ts_ms": 2}
        customers.append((cid, base + i * 40, orjson.dumps(env)))
    for i in range(1_500):
        orders.append((key(), base + i * 8 + rng.randrange(2), orjson.dumps({"id": f"o{i}"})))
    for i in range(1_500):
        payments.append((key(), base + i * 8 + rng.randrange(3), orjson.dumps({"id": f"p{i}"})))
    return {"customers": customers, "orders": sorted(orders, key=lambda r: r[1]), "payments": payments}


def oracle(data: dict[str, list[Row]]) -> tuple[Counter[tuple[str, Any]], Counter[tuple[str, str]]]:
    """Timestamp order; on equal timestamps the table before the stream. Nothing is late then."""
    tiers: dict[bytes, int] = {}
    events = [(t, 0, k, v) for k, t, v in data["customers"]] + [(t, 1, k, v) for k, t, v in data["orders"]]
    enriched: Counter[tuple[str, Any]] = Counter()
    for _, kind, k, v in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            tiers[k] = orjson.loads(v)["after"]["tier"]
        else:
            enriched[(orjson.loads(v)["id"], tiers.get(k))] += 1
    paid: Counter[tuple[str, str]] = Counter()
    for k, t, v in data["orders"]:
        for k2, t2, v2 in data["payments"]:
            if k == k2 and t <= t2 <= t + AFTER_MS:
                paid[(orjson.loads(v)["id"], orjson.loads(v2)["id"])] += 1
    return enriched, paid


def produce_rows(bootstrap: str, topic: str, rows: list[Row]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 10})
    for k, t, v in rows:
        producer.produce(topic, v, k, timestamp=t)
    assert producer.flush(60) == 0


def run(bootstrap: str, names, tag: str, data: dict[str, list[Row]], first: list[str], idle_ms: int):  # type: ignore[no-untyped-def]
    """Produce the topics in `first`, start the worker, and produce the others once it is assigned."""
    topics = {t: names.topic(f"{tag}-{t}", PARTITIONS) for t in ("customers", "orders", "payments")}
    app = names(f"{tag}-app")
    outs = {o: names(f"{tag}-{o}") for o in ("enriched", "paid")}
    names.track(*outs.values(), *(t + ".dlq" for t in topics.values()))
    names.track(*(f"{app}.synced.{s}.changelog" for s in ("customers", "paid")))
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="s-0",
        batch_size=100,
        max_task_idle_ms=idle_ms,
        topics={**topics, **outs},
    )
    for name in first:
        produce_rows(bootstrap, topics[name], data[name])
    worker = Worker([build()], settings)
    worker.start()
    admin = admin_client(bootstrap)
    try:
        manager = worker.agents[0].manager
        wait_for(lambda: len(manager.assigned) == 3 * PARTITIONS, 60, "the assignment")
        for name in sorted(set(topics) - set(first)):
            produce_rows(bootstrap, topics[name], data[name])
        ends = {t: end_offsets(admin, t) for t in topics.values()}

        def consumed() -> bool:
            return all(
                committed_offsets(bootstrap, f"{app}-synced", t, PARTITIONS) == ends[t]
                for t in topics.values()
            )

        wait_for(consumed, 120, "every input record processed and committed")
    finally:
        worker.stop()
        assert worker.join(60) == 0
    decoded = {o: [orjson.loads(m.value()) for m in read_all(bootstrap, t)] for o, t in outs.items()}
    enriched = Counter((v["order"], v["tier"]) for v in decoded["enriched"])
    paid = Counter((v["order"], v["pay"]) for v in decoded["paid"])
    return enriched, paid


def test_joins_give_the_oracle_whichever_input_runs_ahead(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    data = generate(seed=6)
    expected = oracle(data)
    assert sum(expected[1].values()) > 500 and len({t for _, t in expected[0]}) > 3
    ahead = run(bootstrap, names, "ahead", data, ["customers", "payments"], idle_ms=10_000)
    behind = run(bootstrap, names, "behind", data, ["orders"], idle_ms=10_000)
    assert ahead[0] == behind[0] == expected[0]
    assert ahead[1] == behind[1] == expected[1]
    unsynced = run(bootstrap, names, "unsynced", data, ["customers", "payments"], idle_ms=-1)
    assert unsynced != expected, "without synchronisation the skew changes the joins"
