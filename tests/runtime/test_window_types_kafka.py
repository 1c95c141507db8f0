"""Every window type through the real broker and the worker runtime: final results and the late set
equal the brute-force oracles of `tests.windows.oracle` exactly (issue 3 acceptance).

Input is seeded, out of order, spread over several partitions (each key always in one partition) and
has late records. The runtime folds each partition's records in offset order and closes windows by
that partition's own watermark, so the oracle runs per partition over the records in offset order and
the expected results are the windows closed by each partition's final watermark.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Aggregation, Count, Hopping, Max, Mean, Session, Sliding, Sum, Tumbling
from streamsvc.windows.spec import WindowSpec
from tests.windows.oracle import Expected, Rec, oracle

PARTITIONS, KEYS, RECORDS = 3, 12, 3_000
STORE = "agg"


@dataclass(frozen=True)
class Case:
    spec: WindowSpec
    aggregation: Callable[[], Aggregation]
    fold: Callable[[list[Any]], Any]  # the oracle's fold of a window's values, in record order
    lateness: int  # allowed_lateness_ms
    seed: int


CASES = {
    "tumbling": Case(Tumbling(1_000, grace_ms=300), Count, len, 0, 101),
    "hopping": Case(Hopping(1_000, 250, grace_ms=200), Sum, sum, 100, 202),
    "sliding": Case(Sliding(800, grace_ms=300), Max, max, 0, 303),
    "session": Case(Session(400, grace_ms=300), Mean, lambda vs: sum(vs) / len(vs), 150, 404),
}


def offset_id(partition: int, offset: int) -> int:
    return partition * 1_000_000 + offset


def generate(seed: int) -> dict[int, list[Rec]]:
    """Per partition, records in offset order; `Rec.id` encodes (partition, offset).

    Mostly ordered with +-400 ms of disorder, some records far behind; keys with different rates, so
    sessions both merge and split. Values are integers (as floats), so sums and means are exact.
    """
    rng = random.Random(seed)
    # Recent event times: window results carry them as Kafka timestamps, and the broker's time-based
    # retention would delete records stamped in the distant past while the test reads them.
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    weights = [1 + 3 * (k % 4) for k in range(KEYS)]
    parts: dict[int, list[Rec]] = {p: [] for p in range(PARTITIONS)}
    for i in range(RECORDS):
        k = rng.choices(range(KEYS), weights)[0]
        t = base + i * 20 + rng.randrange(-400, 401)
        if rng.random() < 0.04:
            t -= rng.randrange(500, 5_000)  # far behind: late unless one of its windows is still open
        partition = k % PARTITIONS
        recs = parts[partition]
        recs.append(Rec(offset_id(partition, len(recs)), f"k{k}".encode(), t, float(rng.randrange(-50, 51))))
    return parts


def produce(bootstrap: str, topic: str, parts: dict[int, list[Rec]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True})
    for partition, recs in parts.items():
        for r in recs:
            value = orjson.dumps({"t": r.t, "x": int(r.value)})
            producer.produce(topic, value, bytes(r.key), partition=partition)  # type: ignore[arg-type]
    assert producer.flush(60) == 0


def event_time(value: dict[str, Any], _kafka_ts: int) -> int:
    return int(value["t"])


def topology(kind: str, case: Case) -> Topology:
    top = Topology(f"window-{kind}")
    (
        top.source("input", value_serde=JsonSerde(), event_time=event_time)
        .window(
            STORE,
            case.spec,
            case.aggregation(),
            value=lambda v: v["x"],
            allowed_lateness_ms=case.lateness,
            key_format="legacy",
        )
        .to("output", value_serde=JsonSerde())
    )
    return top


@pytest.mark.parametrize("kind", list(CASES))
def test_final_results_and_late_records_equal_the_oracle(bootstrap: str, names, kind: str) -> None:  # type: ignore[no-untyped-def]
    case = CASES[kind]
    parts = generate(case.seed)
    expected: Expected = oracle(parts, case.spec, case.fold, case.lateness)
    expected_final = expected.final()
    expected_late = {divmod(i, 1_000_000) for i in expected.late}
    # The input must exercise what the acceptance asks for.
    assert all(len(recs) > 100 for recs in parts.values())
    assert all(any(b.t < a.t for a, b in itertools.pairwise(recs)) for recs in parts.values())
    assert len({p for p, _ in expected_late}) == PARTITIONS, "late records in every partition"
    assert len(expected_final) > 100
    assert len(expected.windows) > len(expected.closed), "some windows are still open at the end"

    source = names.topic("input", PARTITIONS)
    output, app = names("output"), names("app")
    names.track(output, source + ".dlq", f"{app}.window-{kind}.{STORE}.changelog")
    produce(bootstrap, source, parts)
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="w-0",
        batch_size=200,
        topics={"input": source, "output": output},
    )
    worker = Worker([topology(kind, case)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0

    got: Counter[tuple[Any, ...]] = Counter()
    for m in read_all(bootstrap, output):
        v = orjson.loads(m.value())
        got[(m.key(), v["start"], v["end"], v["value"])] += 1
    late: set[tuple[int, int]] = set()
    for m in read_all(bootstrap, source + ".dlq"):
        h = dlq_headers(m.headers())
        assert h["dlq.stage"] == "late", h
        late.add((int(h["dlq.source.partition"]), int(h["dlq.source.offset"])))

    assert late == expected_late, (
        f"late: {len(late)} vs {len(expected_late)}; unexpected {sorted(late - expected_late)[:5]}, "
        f"missing {sorted(expected_late - late)[:5]}"
    )
    missing, extra = expected_final - got, got - expected_final
    assert got == expected_final, (
        f"{sum(got.values())} results vs {sum(expected_final.values())}; "
        f"extra {sorted(extra)[:4]}, missing {sorted(missing)[:4]}"
    )
    totals = worker.agents[0].totals
    assert totals.late[source] == len(expected_late)
    assert totals.balanced()
