"""The fast path of `Processor.process` (`runtime.fastpath`) against the per-record path: same outputs
(bytes, timestamps, DLQ headers), same tally, same window results, on random batches with poison."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord
from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.processor import Processor
from streamsvc.serde import BytesSerde, JsonSerde, StringSerde
from streamsvc.topology import Topology
from streamsvc.validation.expectations import not_null
from streamsvc.windows import Count, Hopping, Sum, Tumbling
from tests.runtime.test_processor import FakeMessage

T0 = 1_700_000_000_000


def bid_time(bid: dict[str, Any], _ts: int) -> int:
    return int(bid["date_time"])


def q5() -> Topology:
    t = Topology("q5")
    t.source("bids", value_serde=JsonSerde(), event_time=bid_time).window(
        "per-auction", Hopping(size_ms=10_000, advance_ms=2_000, grace_ms=1_000), Count(), key_format="legacy"
    ).to("counts", value_serde=JsonSerde())
    return t


def summed() -> Topology:
    t = Topology("sum")
    (
        t.source("bids", value_serde=JsonSerde(), event_time=bid_time, expectations=[not_null("price")])
        .filter(lambda b: b["price"] != 13)
        .window("sum", Tumbling(size_ms=5_000), Sum("int64"), value=lambda b: b["price"])
        .to("sums", value_serde=JsonSerde())
    )
    return t


def json_map() -> Topology:
    def enrich(event: dict[str, Any]) -> dict[str, Any]:
        event["cents"] = int(event["price"] * 100)
        return event

    t = Topology("map")
    (
        t.source("bids", value_serde=JsonSerde(), expectations=[not_null("price")])
        .map(enrich)
        .filter(lambda e: e["price"] != 13)
        .select_key(lambda k, v: str(v["bidder"]).encode())
        .to("out", value_serde=JsonSerde())
    )
    return t


def passthrough() -> Topology:
    t = Topology("pass")
    t.source("bids", value_serde=BytesSerde()).to("out", value_serde=BytesSerde())
    t.source("other", value_serde=StringSerde()).to("out2", value_serde=StringSerde())
    return t


TOPOLOGIES = {"q5": q5, "sum": summed, "map": json_map, "pass": passthrough}

POISON = [
    b"{not json",
    None,
    b"",
    orjson.dumps({"auction": 1, "price": None, "date_time": T0}),  # fails validation (not_null)
    orjson.dumps({"auction": 1, "price": 5}),  # no date_time: event time raises
    orjson.dumps({"auction": 1, "price": "x", "date_time": T0}),  # Sum of a str / str * 100
    orjson.dumps([1, 2]),  # not a dict
    b"x" * 2_000,  # too large for the sink (limit below)
]


def record(auction: int, price: int, t: int) -> bytes:
    return orjson.dumps({"auction": auction, "bidder": auction * 7, "price": price, "date_time": t})


def batch_strategy() -> st.SearchStrategy[list[list[tuple[int, bytes | None, int, int]]]]:
    """Batches of (partition, value, key auction, kafka ts): good bids, late ones, and poison."""
    good = st.builds(
        lambda a, p, dt: ("good", a, p, dt),
        st.integers(0, 5),
        st.sampled_from([1, 7, 13, 20]),
        st.integers(0, 40_000),
    )
    bad = st.builds(lambda i: ("bad", i, 0, 0), st.integers(0, len(POISON) - 1))
    item = st.tuples(st.integers(0, 2), st.one_of(good, good, good, bad))
    return st.lists(st.lists(item, max_size=40), min_size=1, max_size=5)


def messages(spec: list[list[tuple[int, Any]]]) -> list[list[FakeMessage]]:
    offsets: dict[int, int] = {}
    out = []
    for batch in spec:
        msgs = []
        for partition, (kind, a, p, dt) in sorted(batch, key=lambda x: x[0]):  # runs of a partition
            value = record(a, p, T0 + dt) if kind == "good" else POISON[a]
            off = offsets[partition] = offsets.get(partition, -1) + 1
            topic = "other" if kind == "good" and p == 20 and a == 5 else "bids"
            msgs.append(FakeMessage(topic, value, str(a).encode(), partition, off, ts=T0 + dt))
        out.append(msgs)
    return out


def run(topology: Topology, batches: list[list[FakeMessage]], fast: bool) -> tuple[list[Any], Tally]:
    proc = Processor(topology, Settings(app_id="app"))
    from streamsvc.runtime.outputs import TopicLimits

    proc.set_limits({}, TopicLimits(max_bytes=1_000))
    proc.fast_path = fast
    outs: list[Any] = []
    total = Tally()
    for batch in batches:
        if any(m.topic_ not in proc.sources for m in batch):
            batch = [m for m in batch if m.topic_ in proc.sources]
        result = proc.process(batch)
        outs += [_shape(o) for o in result.outputs]
        total.add(result.tally)
        assert result.tally.balanced()
    return outs, total


def _shape(o: OutputRecord) -> tuple[Any, ...]:
    return (o.topic, o.key, o.value, o.timestamp_ms, o.headers)


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=batch_strategy())
def test_fast_path_equals_the_per_record_path(name: str, spec: list[list[tuple[int, Any]]]) -> None:
    batches = messages(spec)
    fast_out, fast_tally = run(TOPOLOGIES[name](), batches, fast=True)
    slow_out, slow_tally = run(TOPOLOGIES[name](), batches, fast=False)
    assert fast_out == slow_out
    assert fast_tally == slow_tally


def test_linear_sources_have_a_plan_and_others_do_not() -> None:
    assert set(Processor(q5(), Settings()).plans) == {"bids"}
    assert set(Processor(passthrough(), Settings()).plans) == {"bids", "other"}
    t = Topology("branchy")
    s = t.source("in", value_serde=JsonSerde())
    s.to("a", value_serde=JsonSerde())
    s.map(lambda v: v).to("b", value_serde=JsonSerde())  # two children: not linear
    assert Processor(t, Settings()).plans == {}


def test_a_poison_record_inside_a_fast_batch_gets_the_per_record_dlq_record() -> None:
    good = [FakeMessage("bids", record(1, 5, T0 + i), b"1", 0, i, ts=T0 + i) for i in range(10)]
    poison = FakeMessage("bids", b"{oops", b"1", 0, 10, headers_=[("trace", b"abc")], ts=T0 + 10)
    rest = [FakeMessage("bids", record(1, 5, T0 + 20_000 + i), b"1", 0, 11 + i, ts=T0 + i) for i in range(5)]
    batch = [*good, poison, *rest]
    fast, slow = Processor(q5(), Settings(app_id="app")), Processor(q5(), Settings(app_id="app"))
    slow.fast_path = False
    got, want = fast.process(batch), slow.process(batch)
    dead = [o for o in got.outputs if o.topic == "bids.dlq"]
    assert len(dead) == 1 and dead[0].value == b"{oops" and dead[0].key == b"1"
    assert [_shape(o) for o in got.outputs] == [_shape(o) for o in want.outputs]
    headers = dict(dead[0].headers or [])
    assert headers["trace"] == b"abc"
    assert headers["dlq.stage"] == b"decode"
    assert headers["dlq.error.class"] == b"streamsvc.errors.MalformedPayloadError"
    assert headers["dlq.source.offset"] == b"10"
    assert got.tally == want.tally
    assert got.tally.consumed["bids"] == 16 and got.tally.dead_lettered[("bids", "decode")] == 1
    assert got.tally.emitted["bids"] == 15 and got.tally.balanced()
