"""Issue #7, stream agent: failures that leave through an exception or a broker refusal, not SIGKILL.

Each test is one numbered scenario of the issue, against the real broker, through `Worker` (the
`streamsvc run` worker in-process) or `streamsvc run` itself. The oracle is exact: read_committed
outputs, every poison record in the DLQ exactly once with its `dlq.*` headers, the accounting invariant
from the agent's committed totals, and a second run that changes nothing (no crash loop, no duplicate).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.runtime.worker import Worker
from streamsvc.serde import BytesSerde, JsonSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.windowed import TimeWindowedSerde, Windowed
from streamsvc.topology import Topology
from streamsvc.topology.loader import load_topology
from streamsvc.windows import Aggregate, Count, Reduce, Sum, Tumbling
from tests.support import (
    ROOT,
    WorkerProcess,
    committed_offsets,
    finish,
    free_port,
    header_map,
    read_settled,
    wait_for,
)

KEYED_TRANSFORM = str(ROOT / "tests" / "topologies" / "keyed_transform.py")
WINDOWED_COUNT = str(ROOT / "tests" / "topologies" / "windowed_count.py")
SIZE = 1_000  # window size of the topologies built here (ms)


def _settings(bootstrap: str, app: str, **topics: str) -> Settings:
    return Settings(app_id=app, bootstrap_servers=bootstrap, instance_id="fp-0", topics=topics)


def _send(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
    """(key, value, timestamp or 0) in order to partition 0, one flush per record so that a ~1 MB
    record never shares a produce request with another."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for key, value, ts in records:
        producer.produce(topic, value, key, partition=0, timestamp=ts)
        assert producer.flush(30) == 0
    assert producer.flush(30) == 0


def _values(bootstrap: str, topic: str) -> Counter[bytes | None]:
    return Counter(m.value() for m in read_settled(bootstrap, topic))


def _dlq(bootstrap: str, topic: str) -> dict[int, tuple[dict[str, str], bytes | None, bytes | None]]:
    """DLQ records by source offset; fails on a source offset dead-lettered twice."""
    out: dict[int, tuple[dict[str, str], bytes | None, bytes | None]] = {}
    for msg in read_settled(bootstrap, topic):
        h = header_map(msg)
        offset = int(h["dlq.source.offset"])
        assert offset not in out, f"source offset {offset} is in {topic} twice"
        out[offset] = (h, msg.key(), msg.value())
    return out


def _totals(worker: Worker) -> Any:
    return worker.agents[0].totals


def _recent_base() -> int:
    """A window-aligned event time in the recent past: results carry it as their Kafka timestamp."""
    return (int(time.time() * 1000) - 600_000) // 60_000 * 60_000


# ---- item 1: an exception inside a batch must not commit the half-done transaction ---------------


def test_poison_whose_dead_letter_exceeds_message_max_bytes_is_truncated_once(  # type: ignore[no-untyped-def]
    bootstrap: str, names
) -> None:
    source = names.topic("input")
    output = names("output")
    names.track(output, source + ".dlq")
    poison = b"\xff" + b"x" * 999_799  # not JSON; with the dlq.* headers over librdkafka's 1,000,000
    good = [i for i in range(10) if i != 5]
    records = [(str(i).encode(), poison if i == 5 else orjson.dumps({"id": i, "n": i}), 0) for i in range(10)]
    _send(bootstrap, source, records)
    expected = Counter(orjson.dumps({"id": i, "sq": i * i, "tag": f"k{i % 97}"}) for i in good)
    settings = _settings(bootstrap, names("app"), input=source, output=output)

    first = Worker([load_topology(KEYED_TRANSFORM)], settings, until_caught_up=True)
    assert finish(first, 90) == 0, "the worker must dead-letter the poison record, not crash"
    assert _values(bootstrap, output) == expected
    dead = _dlq(bootstrap, source + ".dlq")
    assert sorted(dead) == [5]
    h, key, value = dead[5]
    assert h["dlq.stage"] == "decode"
    assert h["dlq.error.class"].endswith("MalformedPayloadError")
    assert h["dlq.source.topic"] == source and h["dlq.source.partition"] == "0"
    assert h["dlq.payload.truncated"] == "true"
    assert h["dlq.payload.size"] == str(len(poison))
    assert key == b"5"
    assert value is not None and 0 < len(value) < len(poison) and poison.startswith(value)
    totals = _totals(first)
    assert totals.consumed[source] == 10 and totals.emitted[source] == 9
    assert totals.dead_lettered[(source, "decode")] == 1
    assert totals.balanced()

    again = Worker([load_topology(KEYED_TRANSFORM)], settings, until_caught_up=True)
    assert finish(again, 90) == 0
    assert sum(_totals(again).consumed.values()) == 0, "everything was committed by the first run"
    assert _values(bootstrap, output) == expected
    assert sorted(_dlq(bootstrap, source + ".dlq")) == [5]


# ---- item 4: a record the broker refuses goes to the DLQ instead of aborting every transaction ------


def _passthrough() -> Topology:
    topology = Topology("passthrough")
    topology.source("input", value_serde=BytesSerde()).to("output", value_serde=BytesSerde())
    return topology


@pytest.mark.parametrize("refusal", ["over_max_message_bytes", "timestamp_after_max"])
def test_output_the_broker_refuses_is_dead_lettered(bootstrap: str, names, refusal: str) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    if refusal == "over_max_message_bytes":
        source = names.topic("input")
        output = names.topic("output", max_message_bytes=10_000)
        bad_value, bad_ts = b"v" * 50_000, 0
    else:
        # The source accepts a timestamp 3 h ahead; the output (like Kafka 4's default) only 1 h.
        source = names.topic("input", message_timestamp_after_max_ms=30 * 86_400_000)
        output = names.topic("output", message_timestamp_after_max_ms=3_600_000)
        bad_value, bad_ts = b"from the future", now + 3 * 3_600_000
    names.track(source + ".dlq")
    records = [
        (f"k{i}".encode(), bad_value if i == 3 else f"v{i}".encode(), bad_ts if i == 3 else 0)
        for i in range(8)
    ]
    _send(bootstrap, source, records)
    expected = Counter(v for i, (_, v, _) in enumerate(records) if i != 3)
    settings = _settings(bootstrap, names("app"), input=source, output=output)

    first = Worker([_passthrough()], settings, until_caught_up=True)
    assert finish(first, 90) == 0, "a refused record must not abort every transaction forever"
    assert _values(bootstrap, output) == expected
    dead = _dlq(bootstrap, source + ".dlq")
    assert sorted(dead) == [3]
    h, key, value = dead[3]
    assert h["dlq.stage"] == "process"
    assert h["dlq.error.class"] and h["dlq.error.message"]
    assert "dlq.payload.truncated" not in h, "the DLQ topic takes the whole record"
    assert (key, value) == (b"k3", bad_value)
    if bad_ts:
        assert h["dlq.source.timestamp"] == str(bad_ts)
    totals = _totals(first)
    assert (totals.consumed[source], totals.emitted[source]) == (8, 7)
    assert totals.dead_lettered[(source, "process")] == 1
    assert totals.balanced()

    again = Worker([_passthrough()], settings, until_caught_up=True)
    assert finish(again, 90) == 0
    assert sum(_totals(again).consumed.values()) == 0
    assert _values(bootstrap, output) == expected
    assert sorted(_dlq(bootstrap, source + ".dlq")) == [3]


# ---- item 3: one bad record inside a window or an interval join fails alone ----------------------

N, BAD = 24, 10  # records per window case; the index of the bad one


def _window_key(data: bytes | None, topic: str) -> Windowed:
    """A window result's key: Kafka Streams' time-windowed layout around a JSON record key."""
    return TimeWindowedSerde(SIZE, inner=JsonSerde()).deserialize(data, SerdeContext(topic, True))  # type: ignore[no-any-return]


def _negative_raises(acc: int, value: int) -> int:
    if value < 0:
        raise ValueError(f"negative value {value}")
    return acc + value


WINDOW_CASES: dict[str, tuple[Callable[[], Any], bytes, dict[str, Any]]] = {
    # case: (aggregation, raw key of the bad record, its value fields)
    "sum_of_a_string": (Sum, b'"k1"', {"x": "abc"}),
    "float_window_key": (Count, b"1.5", {"x": 1}),
    "reduce_raises": (lambda: Reduce(_negative_raises), b'"k1"', {"x": -1}),
    "aggregate_raises": (lambda: Aggregate(lambda: 0, _negative_raises), b'"k1"', {"x": -1}),
}


@pytest.mark.parametrize("case", sorted(WINDOW_CASES))
def test_window_record_failing_inside_the_fold_is_dead_lettered_alone(
    bootstrap: str, names, case: str
) -> None:  # type: ignore[no-untyped-def]
    make_aggregation, bad_key, bad_fields = WINDOW_CASES[case]
    source = names.topic("input")
    app = names("app")
    names.track(names("output"), source + ".dlq", f"{app}.fold.w.changelog")
    base = _recent_base()
    rows = [(f'"k{i % 3}"'.encode(), {"t": base + i * 150, "x": i + 100}) for i in range(N)]
    rows[BAD] = (bad_key, {"t": base + BAD * 150, **bad_fields})  # not first of its key in its window
    rows.append((b'"k0"', {"t": base + 1_000_000, "x": 1}))  # closes every window above
    _send(bootstrap, source, [(k, orjson.dumps(v), 0) for k, v in rows])

    def topology() -> Topology:
        t = Topology("fold")
        (
            t.source("input", value_serde=JsonSerde(), key_serde=JsonSerde(), event_time=lambda v, ts: v["t"])
            .window("w", Tumbling(SIZE), make_aggregation(), value=lambda v: v["x"])
            .to("output", value_serde=JsonSerde(), key_serde=JsonSerde())
        )
        return t

    folded: dict[tuple[str, int], list[int]] = {}
    for i, (k, v) in enumerate(rows[:N]):
        if i != BAD:
            folded.setdefault((orjson.loads(k), v["t"] - v["t"] % SIZE), []).append(v["x"])
    expected = Counter(
        (key, start, start + SIZE, len(xs) if case == "float_window_key" else sum(xs))
        for (key, start), xs in folded.items()
    )
    settings = _settings(bootstrap, app, input=source, output=names("output"))

    def results() -> Counter[tuple[Any, ...]]:
        got: Counter[tuple[Any, ...]] = Counter()
        for m in read_settled(bootstrap, names("output")):
            w = _window_key(m.key(), names("output"))  # the sink's JsonSerde encodes the inner key
            got[(w.key, w.start_ms, w.end_ms, orjson.loads(m.value()))] += 1
        return got

    first = Worker([topology()], settings, until_caught_up=True)
    assert finish(first, 90) == 0, "one bad record must not crash the worker"
    assert results() == expected
    dead = _dlq(bootstrap, source + ".dlq")
    assert sorted(dead) == [BAD]
    h, key, value = dead[BAD]
    assert h["dlq.stage"] == "process" and h["dlq.error.class"] and h["dlq.error.message"]
    assert (key, value) == (bad_key, orjson.dumps(rows[BAD][1]))
    totals = _totals(first)
    assert totals.consumed[source] == N + 1
    assert totals.dead_lettered[(source, "process")] == 1
    assert totals.balanced()

    again = Worker([topology()], settings, until_caught_up=True)
    assert finish(again, 90) == 0
    assert sum(_totals(again).consumed.values()) == 0
    assert results() == expected
    assert sorted(_dlq(bootstrap, source + ".dlq")) == [BAD]


def test_interval_join_value_that_cannot_be_stored_is_dead_lettered_alone(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    orders, payments = names.topic("orders"), names.topic("payments")
    app = names("app")
    names.track(names("joined"), orders + ".dlq", payments + ".dlq", f"{app}.orders-payments.paid.changelog")
    base, n, bad = _recent_base(), 10, 4
    _send(
        bootstrap,
        payments,
        [(b"k", orjson.dumps({"id": 1000 + i, "t": base + i * 5_000 + 100}), 0) for i in range(n)],
    )
    _send(bootstrap, orders, [(b"k", orjson.dumps({"id": i, "t": base + i * 5_000}), 0) for i in range(n)])

    def with_decimal(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "amount": Decimal("9.99")} if order["id"] == bad else order

    def topology() -> Topology:
        t = Topology("orders-payments")
        left = t.source("orders", value_serde=JsonSerde(), event_time=lambda v, ts: v["t"])
        right = t.source("payments", value_serde=JsonSerde(), event_time=lambda v, ts: v["t"])
        left.map(with_decimal).interval_join(
            right,
            "paid",
            before_ms=1_000,
            after_ms=1_000,
            combine=lambda o, p: {"order": o["id"], "payment": p["id"]},
            grace_ms=600_000,
        ).to("joined", value_serde=JsonSerde())
        return t

    settings = _settings(bootstrap, app, orders=orders, payments=payments, joined=names("joined"))
    expected = Counter(orjson.dumps({"order": i, "payment": 1000 + i}) for i in range(n) if i != bad)

    first = Worker([topology()], settings, until_caught_up=True)
    assert finish(first, 90) == 0, "one unstorable join value must not crash the worker"
    assert _values(bootstrap, names("joined")) == expected
    dead = _dlq(bootstrap, orders + ".dlq")
    assert sorted(dead) == [bad]
    h, _, value = dead[bad]
    assert h["dlq.stage"] == "process" and h["dlq.source.topic"] == orders
    assert value == orjson.dumps({"id": bad, "t": base + bad * 5_000})
    assert read_settled(bootstrap, payments + ".dlq") == []
    totals = _totals(first)
    assert totals.consumed[orders] == n and totals.consumed[payments] == n
    assert totals.dead_lettered[(orders, "process")] == 1
    assert totals.balanced()

    again = Worker([topology()], settings, until_caught_up=True)
    assert finish(again, 90) == 0
    assert sum(_totals(again).consumed.values()) == 0
    assert _values(bootstrap, names("joined")) == expected


# ---- item 7: a late record in a fan-out is dead-lettered once and counted late -------------------


def test_late_record_in_a_fan_out_is_dead_lettered_once_and_counted_late(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input")
    app = names("app")
    names.track(names("copy"), names("counts"), source + ".dlq", f"{app}.fan-out.counts.changelog")
    base, late_at = _recent_base(), 20
    rows = [(f'"k{i % 2}"'.encode(), {"t": base + i * 200}) for i in range(30)]
    rows[late_at] = (b'"k0"', {"t": base + 100})  # its window [base, base + 1000) closed long ago
    rows.append((b'"k0"', {"t": base + 1_000_000}))  # closes every window above
    _send(bootstrap, source, [(k, orjson.dumps(v), 0) for k, v in rows])

    def topology() -> Topology:
        t = Topology("fan-out")
        stream = t.source(
            "input", value_serde=JsonSerde(), key_serde=JsonSerde(), event_time=lambda v, ts: v["t"]
        )
        stream.to("copy", value_serde=JsonSerde(), key_serde=JsonSerde())
        stream.window("counts", Tumbling(SIZE), Count()).to(
            "counts", value_serde=JsonSerde(), key_serde=JsonSerde()
        )
        return t

    counted: Counter[tuple[str, int]] = Counter()
    for i, (k, v) in enumerate(rows[:-1]):
        if i != late_at:
            counted[(orjson.loads(k), v["t"] - v["t"] % SIZE)] += 1
    expected_counts = Counter((k, s, s + SIZE, n) for (k, s), n in counted.items())
    settings = _settings(bootstrap, app, input=source, copy=names("copy"), counts=names("counts"))

    worker = Worker([topology()], settings, until_caught_up=True)
    assert finish(worker, 90) == 0
    assert _values(bootstrap, names("copy")) == Counter(orjson.dumps(v) for _, v in rows), (
        "the copy branch is not windowed: every record, the late one included, goes out"
    )
    got: Counter[tuple[Any, ...]] = Counter()
    for m in read_settled(bootstrap, names("counts")):
        w = _window_key(m.key(), names("counts"))
        got[(w.key, w.start_ms, w.end_ms, orjson.loads(m.value()))] += 1
    assert got == expected_counts
    dead = _dlq(bootstrap, source + ".dlq")
    assert sorted(dead) == [late_at], "the late record is in the DLQ exactly once"
    assert dead[late_at][0]["dlq.stage"] == "late"
    totals = _totals(worker)
    assert totals.late[source] == 1
    assert totals.emitted[source] == len(rows) - 1
    assert totals.balanced()


# ---- item 15: the SIGTERM drain never rewinds (no state restore while shutting down) ---------------


def _metric(port: int, name: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + "{"))


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def test_sigterm_drain_whose_final_commit_aborts_exits_without_rewinding(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    """Needs the fault-injection harness (new API). ~15 s."""
    source = names.topic("input")
    app = names("app")
    names.track(names("output"), source + ".dlq", f"{app}.windowed-count.counts.changelog")
    base = _recent_base()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    for i in range(20_000):
        producer.produce(source, orjson.dumps({"t": base + i * 10}), f"k{i % 5}".encode(), partition=0)
    assert producer.flush(60) == 0
    port = free_port()
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "drain-0",
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "600000",  # the drain's commit is the first one
        "STREAMSVC_BATCH_SIZE": "200",
        "STREAMSVC_METRICS_PORT": str(port),
        "STREAMSVC_METRICS_HOST": "127.0.0.1",
        # Slow batches keep the input busy (no idle commit); the drain's commit aborts.
        "STREAMSVC_FAULTS": "after_produce:pause=0.2:1:*,before_commit:abortable:1",
    }
    log = tmp_path / "worker.log"
    worker = WorkerProcess(WINDOWED_COUNT, env, log=log)
    try:
        wait_for(lambda: _metric(port, "streamsvc_batch_records_count") >= 3, 90, "three batches processed")
        worker.terminate()
        assert worker.wait(60) == 0, f"the drain must exit 0; see {log}"
    finally:
        worker.close()
    events = _events(log)
    drain = events[next(i for i, e in enumerate(events) if e["event"] == "signal_received_draining") :]
    names_after = [e["event"] for e in drain]
    assert any(b"injected abortable fault at before_commit" in orjson.dumps(e) for e in drain), (
        "the injected abort must have hit the drain's commit"
    )
    assert "transaction_aborted" in names_after
    assert "rewound" not in names_after and "state_restored" not in names_after, names_after
    assert all(o < 0 for o in committed_offsets(bootstrap, f"{app}-windowed-count", source, 1).values())
    assert read_settled(bootstrap, names("output")) == []

    final = WorkerProcess(
        WINDOWED_COUNT,
        {k: v for k, v in env.items() if k != "STREAMSVC_FAULTS"},
        ("--until-caught-up",),
        log=log,
    )
    try:
        assert final.wait(120) == 0
    finally:
        final.close()
    assert committed_offsets(bootstrap, f"{app}-windowed-count", source, 1) == {0: 20_000}
    counts: Counter[tuple[str, int]] = Counter()
    last = base + 19_999 * 10
    for i in range(20_000):
        t = base + i * 10
        if t - t % 1_000 + 1_000 + 500 <= last:  # closed by the final watermark (grace 500 ms)
            counts[(f"k{i % 5}", t - t % 1_000)] += 1
    got: Counter[tuple[str, int, int]] = Counter()
    for m in read_settled(bootstrap, names("output")):
        v = orjson.loads(m.value())
        got[((m.key() or b"").decode(), v["start"], v["value"])] += 1
    assert got == Counter((k, s, n) for (k, s), n in counts.items())


# ---- item 4 (livelock guard): aborts in a row without progress make the worker not ready ----------


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_commits_that_keep_aborting_make_the_worker_not_ready(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Needs the fault-injection harness and `max_consecutive_aborts` (new API). ~10 s."""
    source = names.topic("input")
    names.track(names("output"), source + ".dlq")
    app = names("app")
    _send(bootstrap, source, [(str(i).encode(), orjson.dumps({"id": i, "n": i}), 0) for i in range(50)])
    port = free_port()
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "livelock-0",
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_METRICS_PORT": str(port),
        "STREAMSVC_METRICS_HOST": "127.0.0.1",
        "STREAMSVC_MAX_CONSECUTIVE_ABORTS": "5",
        "STREAMSVC_FAULTS": "before_commit:abortable:1:*",  # every commit aborts: no progress, ever
    }
    log = tmp_path / "worker.log"
    worker = WorkerProcess(KEYED_TRANSFORM, env, log=log)
    try:
        wait_for(lambda: _status(port, "/readyz") == 200, 90, "ready once partitions are assigned")
        wait_for(lambda: _status(port, "/readyz") == 503, 90, "not ready once livelocked")
        assert _status(port, "/healthz") == 200, "the poll loop itself is alive"
        assert _metric(port, "streamsvc_consecutive_aborts") >= 5
        livelocked = [e for e in _events(log) if e["event"] == "agent_livelocked"]
        assert livelocked and livelocked[0]["aborts"] == 5
        # The line names where the agent is stuck: nothing was ever committed, so offset 0.
        assert livelocked[0]["stuck_at"] == {f"{source}:0": 0}, livelocked[0]
        worker.terminate()
        assert worker.wait(60) == 0
    finally:
        worker.close()
    assert read_settled(bootstrap, names("output")) == []
