"""Stream-stream interval join (inner and left) through the real broker equals an offline join."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology

PARTITIONS, BEFORE, AFTER, GRACE = 3, 1_000, 2_000, 600_000
KEYS = [f"order-{i}".encode() for i in range(20)]


def build(how: str) -> Topology:
    topology = Topology("orders-payments")
    orders = topology.source("orders", value_serde=JsonSerde(), event_time=lambda v, ts: v["t"])
    payments = topology.source("payments", value_serde=JsonSerde(), event_time=lambda v, ts: v["t"])
    orders.interval_join(
        payments,
        "paid",
        before_ms=BEFORE,
        after_ms=AFTER,
        combine=lambda o, p: {"order": o["id"], "payment": None if p is None else p["id"]},
        how=how,
        grace_ms=GRACE,
    ).to("joined", value_serde=JsonSerde())
    return topology


def offline(
    lefts: list[tuple[bytes, int, int]], rights: list[tuple[bytes, int, int]], how: str
) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for key, t, lid in lefts:
        matches = [rid for k, t2, rid in rights if k == key and t - BEFORE <= t2 <= t + AFTER]
        out.update((lid, rid) for rid in matches)
        if how == "left" and not matches:
            out[(lid, None)] += 1
    return out


@pytest.mark.parametrize("how", ["inner", "left"])
def test_interval_join_equals_the_offline_join(bootstrap: str, names, how: str) -> None:  # type: ignore[no-untyped-def]
    orders, payments = names.topic("orders", PARTITIONS), names.topic("payments", PARTITIONS)
    app = names("app")
    names.track(names("joined"), orders + ".dlq", payments + ".dlq", f"{app}.orders-payments.paid.changelog")
    rng = random.Random(3 if how == "inner" else 4)
    base = int(time.time() * 1000) - 600_000  # recent: results are stamped with event time
    lefts = [(rng.choice(KEYS), base + rng.randrange(200_000), i) for i in range(400)]
    rights = [(rng.choice(KEYS), base + rng.randrange(200_000), 10_000 + i) for i in range(400)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for topic, recs in ((orders, lefts), (payments, rights)):
        for key, t, rid in recs:
            producer.produce(
                topic, orjson.dumps({"id": rid, "t": t}), key, partition=KEYS.index(key) % PARTITIONS
            )
    assert producer.flush(30) == 0
    topics = {"orders": orders, "payments": payments, "joined": names("joined")}
    settings = Settings(app_id=app, bootstrap_servers=bootstrap, instance_id="ij-0", topics=topics)
    # Phase 1: both sides, in whatever interleaving the consumer picks; the grace covers the data's
    # whole time span, so nothing is late and no interval closes yet.
    worker = Worker([build(how)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    # Phase 2, a new worker (state restored from the changelog): one record per partition far enough
    # ahead to close every interval. Sent only now, so it cannot overtake the other side's records.
    for p in range(PARTITIONS):
        producer.produce(orders, orjson.dumps({"id": -1, "t": base + 900_000}), b"flush", partition=p)
    assert producer.flush(30) == 0
    worker = Worker([build(how)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    got: Counter[Any] = Counter()
    for m in read_all(bootstrap, names("joined")):
        v = orjson.loads(m.value())
        got[(v["order"], v["payment"])] += 1
    expected = offline(lefts, rights, how)
    assert expected and got == expected
    assert worker.agents[0].totals.balanced()
