"""Pure unit tests of the Processor: operators, topic mapping, DLQ routing and the accounting invariant."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord, Stage, dlq_headers
from streamsvc.errors import TopologyError
from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.processor import Processor
from streamsvc.serde.json import JsonSerde
from streamsvc.serde.raw import StringSerde
from streamsvc.topology.model import Topology
from streamsvc.validation.expectations import in_range, is_record, is_type, not_null

TS = 1_700_000_000_123


@dataclass
class FakeMessage:
    """Implements the `SourceMessage` protocol (the subset of confluent_kafka.Message we use)."""

    topic_: str
    value_: str | bytes | None
    key_: str | bytes | None = None
    partition_: int = 0
    offset_: int = 0
    headers_: list[tuple[str, bytes | None]] | None = None
    ts: int = TS

    def topic(self) -> str | None:
        return self.topic_

    def partition(self) -> int | None:
        return self.partition_

    def offset(self) -> int | None:
        return self.offset_

    def key(self) -> str | bytes | None:
        return self.key_

    def value(self) -> str | bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


def msg(topic: str, value: Any, key: bytes | None = None, offset: int = 0, **kw: Any) -> FakeMessage:
    """A message whose value is `value` JSON-encoded (bytes/str values are passed through raw)."""
    raw = value if isinstance(value, bytes | str) or value is None else orjson.dumps(value)
    return FakeMessage(topic, raw, key, offset_=offset, **kw)


def values(outputs: list[OutputRecord], topic: str) -> list[Any]:
    return [orjson.loads(o.value) if o.value is not None else None for o in outputs if o.topic == topic]


def dead(tally: Tally) -> dict[tuple[str, Stage], int]:
    return dict(tally.dead_lettered)


def proc(topology: Topology, **kw: Any) -> Processor:
    return Processor(topology, Settings(app_id="test-app", **kw))


# --------------------------------------------------------------------------------------------- operators


def test_map_transforms_value_and_keeps_key_and_timestamp() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).map(lambda v: {"n": v["n"] * 10}).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"n": 1}, key=b"k1"), msg("in", {"n": 2}, key=b"k2", ts=5)])
    assert [(o.topic, o.key, o.value, o.timestamp_ms, o.headers) for o in res.outputs] == [
        ("out", b"k1", b'{"n":10}', TS, None),
        ("out", b"k2", b'{"n":20}', 5, None),
    ]
    assert res.tally.consumed == Counter({"in": 2})
    assert res.tally.emitted == Counter({"in": 2})
    assert res.tally.filtered == Counter()
    assert res.tally.produced == Counter({"out": 2})
    assert res.tally.balanced()


def test_filter_counts_dropped_records_as_filtered() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).filter(lambda v: v["qty"] > 0).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"qty": q}) for q in (3, 0, -1, 7)])
    assert values(res.outputs, "out") == [{"qty": 3}, {"qty": 7}]
    assert res.tally.emitted == Counter({"in": 2})
    assert res.tally.filtered == Counter({"in": 2})
    assert dead(res.tally) == {}
    assert res.tally.balanced()


def test_flat_map_emits_many_and_zero_items_counts_as_filtered() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).flat_map(lambda v: [{"i": i} for i in range(v["n"])]).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"n": 3}), msg("in", {"n": 0}), msg("in", {"n": 1})])
    assert values(res.outputs, "out") == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 0}]
    # One consumed record with three outputs is one "emitted" record, but three produced records.
    assert res.tally.emitted == Counter({"in": 2})
    assert res.tally.filtered == Counter({"in": 1})
    assert res.tally.produced == Counter({"out": 4})
    assert res.tally.balanced()


def test_select_key_rekeys_with_key_and_value() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).select_key(lambda k, v: f"{k.decode()}:{v['id']}").to("out", JsonSerde())
    res = proc(t).process([msg("in", {"id": 7}, key=b"old")])
    assert [(o.key, o.value) for o in res.outputs] == [(b"old:7", b'{"id":7}')]


def test_select_key_to_non_bytes_with_default_key_serde_dead_letters() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).select_key(lambda k, v: v["id"]).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"id": 7}, key=b"k")])
    assert [o.topic for o in res.outputs] == ["in.dlq"]
    h = dlq_headers(res.outputs[0].headers)
    assert h["dlq.stage"] == "process"
    assert h["dlq.error.class"] == "streamsvc.errors.EncodeError"
    assert h["dlq.error.message"] == "BytesSerde for out needs bytes or str, got int"


def test_select_key_with_explicit_key_serde() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).select_key(lambda k, v: v["id"]).to("out", JsonSerde(), key_serde=JsonSerde())
    res = proc(t).process([msg("in", {"id": 7})])
    assert [(o.key, o.value) for o in res.outputs] == [(b"7", b'{"id":7}')]


def test_peek_sees_key_and_value_and_passes_record_unchanged() -> None:
    seen: list[tuple[Any, Any]] = []
    t = Topology("t")
    t.source("in", JsonSerde()).peek(lambda k, v: seen.append((k, v))).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"a": 1}, key=b"k"), msg("in", {"a": 2})])
    assert seen == [(b"k", {"a": 1}), (None, {"a": 2})]
    assert values(res.outputs, "out") == [{"a": 1}, {"a": 2}]
    assert [o.key for o in res.outputs] == [b"k", None]


def test_chained_operators_apply_in_order() -> None:
    t = Topology("t")
    (
        t.source("in", JsonSerde())
        .map(lambda v: v["n"])
        .filter(lambda n: n % 2 == 1)
        .flat_map(lambda n: [n, n * 100])
        .map(lambda n: {"v": n})
        .to("out", JsonSerde())
    )
    res = proc(t).process([msg("in", {"n": n}) for n in range(4)])
    assert values(res.outputs, "out") == [{"v": 1}, {"v": 100}, {"v": 3}, {"v": 300}]
    assert res.tally.emitted == Counter({"in": 2})
    assert res.tally.filtered == Counter({"in": 2})


def _branch_topology(default: str | None) -> Topology:
    t = Topology("t")
    branches = t.source("in", JsonSerde()).branch(
        default=default, big=lambda v: v["n"] >= 100, positive=lambda v: v["n"] > 0
    )
    branches["big"].to("big", JsonSerde())
    branches["positive"].map(lambda v: {"pos": v["n"]}).to("positive", JsonSerde())
    if default:
        branches[default].to("rest", JsonSerde())
    return t


def test_branch_first_match_wins_and_default_branch() -> None:
    res = proc(_branch_topology("other")).process([msg("in", {"n": n}) for n in (500, 5, -5, 100, 0)])
    # 500 and 100 match both predicates: only the first ("big") gets them.
    assert values(res.outputs, "big") == [{"n": 500}, {"n": 100}]
    assert values(res.outputs, "positive") == [{"pos": 5}]
    assert values(res.outputs, "rest") == [{"n": -5}, {"n": 0}]
    assert [o.topic for o in res.outputs] == ["big", "positive", "rest", "big", "rest"]
    assert res.tally.emitted == Counter({"in": 5})
    assert res.tally.filtered == Counter()
    assert res.tally.produced == Counter({"big": 2, "positive": 1, "rest": 2})


def test_branch_without_default_filters_unmatched() -> None:
    res = proc(_branch_topology(None)).process([msg("in", {"n": n}) for n in (500, -5, 5, 0)])
    assert [o.topic for o in res.outputs] == ["big", "positive"]
    assert res.tally.emitted == Counter({"in": 2})
    assert res.tally.filtered == Counter({"in": 2})
    assert res.tally.balanced()


def test_branch_returns_one_stream_per_name_including_default() -> None:
    t = Topology("t")
    branches = t.source("in", JsonSerde()).branch(default="d", a=lambda v: True, b=lambda v: False)
    assert list(branches) == ["a", "b", "d"]
    assert [s.branch_name for s in branches.values()] == ["a", "b", "d"]


def test_multiple_sinks_on_one_node_and_on_different_nodes() -> None:
    t = Topology("t")
    src = t.source("in", JsonSerde())
    src.to("raw", JsonSerde()).to("raw_copy", StringSerde())
    src.map(lambda v: {"double": v["n"] * 2}).to("doubled", JsonSerde())
    res = proc(t).process([msg("in", {"n": 4})])
    assert [(o.topic, o.value) for o in res.outputs] == [
        ("raw", b'{"n":4}'),
        ("raw_copy", b"{'n': 4}"),
        ("doubled", b'{"double":8}'),
    ]
    assert res.tally.emitted == Counter({"in": 1})
    assert res.tally.produced == Counter({"raw": 1, "raw_copy": 1, "doubled": 1})


def test_multiple_sources_are_tallied_per_topic() -> None:
    t = Topology("t")
    t.source("a", JsonSerde()).to("out_a", JsonSerde())
    t.source("b", JsonSerde()).filter(lambda v: False).to("out_b", JsonSerde())
    res = proc(t).process([msg("a", 1), msg("b", 2), msg("a", 3), msg("b", b"{bad")])
    assert [o.topic for o in res.outputs] == ["out_a", "out_a", "b.dlq"]
    assert res.tally.consumed == Counter({"a": 2, "b": 2})
    assert res.tally.emitted == Counter({"a": 2})
    assert res.tally.filtered == Counter({"b": 1})
    assert dead(res.tally) == {("b", "decode"): 1}
    assert res.tally.balanced()


def test_tombstone_value_passes_through_json_serde() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).to("out", JsonSerde())
    res = proc(t).process([msg("in", None, key=b"k")])
    assert [(o.topic, o.key, o.value) for o in res.outputs] == [("out", b"k", None)]
    assert res.tally.emitted == Counter({"in": 1})


def test_str_key_and_value_from_message_are_decoded_as_bytes() -> None:
    t = Topology("t")
    t.source("in", JsonSerde(), key_serde=StringSerde()).to("out", JsonSerde(), key_serde=StringSerde())
    res = proc(t).process([FakeMessage("in", '{"x":1}', "key")])
    assert [(o.key, o.value) for o in res.outputs] == [(b"key", b'{"x":1}')]


# --------------------------------------------------------------------------------------- topic mapping


def test_logical_topics_are_mapped_to_real_topics() -> None:
    t = Topology("t")
    t.source("orders", JsonSerde()).to("orders_clean", JsonSerde())
    p = Processor(
        t,
        Settings(app_id="app", topics={"orders": "prod.orders.v1", "orders_clean": "prod.orders_clean.v1"}),
    )
    assert p.source_topics == ["prod.orders.v1"]
    assert p.output_topics == ["prod.orders.v1.dlq", "prod.orders_clean.v1"]
    res = p.process([msg("prod.orders.v1", {"id": 1}), msg("prod.orders.v1", b"nope")])
    assert [o.topic for o in res.outputs] == ["prod.orders_clean.v1", "prod.orders.v1.dlq"]
    assert res.tally.consumed == Counter({"prod.orders.v1": 1 + 1})
    assert dead(res.tally) == {("prod.orders.v1", "decode"): 1}
    assert dlq_headers(res.outputs[1].headers)["dlq.source.topic"] == "prod.orders.v1"


def test_dlq_suffix_setting_is_used_for_default_dlq_topic() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).to("out", JsonSerde())
    p = Processor(t, Settings(dlq_suffix="-dead", topics={"in": "real-in"}))
    res = p.process([msg("real-in", b"{")])
    assert [o.topic for o in res.outputs] == ["real-in-dead"]


def test_custom_dlq_topic_is_logical_and_mapped() -> None:
    t = Topology("t")
    t.source("in", JsonSerde(), dlq_topic="errors").to("out", JsonSerde())
    assert [o.topic for o in proc(t).process([msg("in", b"{")]).outputs] == ["errors"]
    mapped = Processor(t, Settings(topics={"errors": "real-errors"}))
    assert mapped.output_topics == ["out", "real-errors"]
    assert [o.topic for o in mapped.process([msg("in", b"{")]).outputs] == ["real-errors"]


def test_message_from_unknown_topic_raises() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).to("out", JsonSerde())
    with pytest.raises(KeyError):
        proc(t).process([msg("other", {"a": 1})])


def test_serdes_lists_every_serde() -> None:
    key_serde, value_serde, sink_serde = StringSerde(), JsonSerde(), JsonSerde()
    t = Topology("t")
    t.source("in", value_serde, key_serde=key_serde).to("out", sink_serde)
    found = proc(t).serdes()
    assert len(found) == 4
    assert found[0] is key_serde and found[1] is value_serde and found[3] is sink_serde


# ----------------------------------------------------------------------------------------- DLQ routing

DLQ_KEYS = [
    "dlq.error.class",
    "dlq.error.message",
    "dlq.stage",
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
    "dlq.source.timestamp",
    "dlq.app",
]


def _validated_topology(**source_kw: Any) -> Topology:
    t = Topology("t")
    t.source(
        "orders",
        JsonSerde(),
        expectations=[is_record(), not_null("id"), in_range("qty", min=1)],
        **source_kw,
    ).to("out", JsonSerde())
    return t


def test_invalid_json_goes_to_dlq_with_stage_decode_and_original_bytes() -> None:
    original_headers: list[tuple[str, bytes | None]] = [("trace", b"abc"), ("empty", None)]
    m = FakeMessage(
        "orders", b'{"id": 1,', b"key-1", partition_=3, offset_=42, headers_=original_headers, ts=999
    )
    res = proc(_validated_topology()).process([m])
    assert len(res.outputs) == 1
    rec = res.outputs[0]
    assert (rec.topic, rec.key, rec.value, rec.timestamp_ms) == ("orders.dlq", b"key-1", b'{"id": 1,', 0)
    assert rec.headers is not None
    # original headers first, untouched (a null header value stays null), then the dlq.* headers in order
    assert rec.headers[:2] == [("trace", b"abc"), ("empty", None)]
    assert [k for k, _ in rec.headers[2:]] == DLQ_KEYS
    h = dlq_headers(rec.headers)
    assert h["dlq.error.class"] == "streamsvc.errors.MalformedPayloadError"
    assert h["dlq.error.message"].startswith("invalid JSON in orders: ")
    assert {k: v for k, v in h.items() if k not in ("dlq.error.class", "dlq.error.message")} == {
        "dlq.stage": "decode",
        "dlq.source.topic": "orders",
        "dlq.source.partition": "3",
        "dlq.source.offset": "42",
        "dlq.source.timestamp": "999",
        "dlq.app": "test-app",
    }
    assert dead(res.tally) == {("orders", "decode"): 1}
    assert res.tally.produced == Counter({"orders.dlq": 1})
    assert res.tally.emitted == Counter() and res.tally.filtered == Counter()
    assert res.tally.balanced()


def test_key_decode_failure_is_stage_decode() -> None:
    t = Topology("t")
    t.source("in", JsonSerde(), key_serde=StringSerde()).to("out", JsonSerde())
    res = proc(t).process([FakeMessage("in", b"{}", b"\xff\xfe")])
    assert [o.topic for o in res.outputs] == ["in.dlq"]
    assert res.outputs[0].key == b"\xff\xfe"
    h = dlq_headers(res.outputs[0].headers)
    assert (h["dlq.stage"], h["dlq.error.class"]) == ("decode", "streamsvc.errors.MalformedPayloadError")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "value must be an object, got list"),
        ({"qty": 2}, "id: required field is missing"),
        ({"id": None, "qty": 2}, "id: must not be null"),
        ({"id": 1, "qty": 0}, "qty: 0 is below the minimum 1"),
    ],
)
def test_failed_expectation_goes_to_dlq_with_stage_validate(value: Any, message: str) -> None:
    raw = orjson.dumps(value)
    res = proc(_validated_topology()).process([msg("orders", raw, key=b"k", offset=8)])
    assert len(res.outputs) == 1
    rec = res.outputs[0]
    assert (rec.topic, rec.key, rec.value) == ("orders.dlq", b"k", raw)
    h = dlq_headers(rec.headers)
    assert h["dlq.stage"] == "validate"
    assert h["dlq.error.class"] == "streamsvc.errors.ExpectationFailed"
    assert h["dlq.error.message"] == message
    assert h["dlq.source.offset"] == "8"
    assert dead(res.tally) == {("orders", "validate"): 1}


class CrashingExpectation:
    """A user-defined expectation that raises instead of returning a message."""

    def check(self, value: Any) -> str | None:
        return f"{value['a'] + 1}"


def test_expectation_raising_goes_to_dlq_with_stage_validate() -> None:
    t = Topology("t")
    t.source("in", JsonSerde(), expectations=[CrashingExpectation()]).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"a": "x"})])
    assert [o.topic for o in res.outputs] == ["in.dlq"]
    h = dlq_headers(res.outputs[0].headers)
    assert (h["dlq.stage"], h["dlq.error.class"]) == ("validate", "TypeError")
    assert h["dlq.error.message"] == 'can only concatenate str (not "int") to str'
    assert dead(res.tally) == {("in", "validate"): 1}


def test_operator_raising_goes_to_dlq_with_stage_process() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).map(lambda v: 10 // v["d"]).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"d": 2}, offset=0), msg("in", {"d": 0}, offset=1)])
    assert [o.topic for o in res.outputs] == ["out", "in.dlq"]
    assert res.outputs[0].value == b"5"
    dlq = res.outputs[1]
    assert dlq.value == b'{"d":0}'
    h = dlq_headers(dlq.headers)
    assert h["dlq.stage"] == "process"
    assert h["dlq.error.class"] == "ZeroDivisionError"
    assert h["dlq.error.message"] == "integer division or modulo by zero"
    assert h["dlq.source.offset"] == "1"
    assert dead(res.tally) == {("in", "process"): 1}
    assert res.tally.emitted == Counter({"in": 1})


@pytest.mark.parametrize("op", ["filter", "peek", "select_key", "flat_map", "branch"])
def test_every_operator_kind_raising_dead_letters(op: str) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError(f"{op} failed")

    t = Topology("t")
    src = t.source("in", JsonSerde())
    node = src.branch(a=boom)["a"] if op == "branch" else getattr(src, op)(boom)
    node.to("out", JsonSerde())
    res = proc(t).process([msg("in", {"x": 1})])
    assert [o.topic for o in res.outputs] == ["in.dlq"]
    h = dlq_headers(res.outputs[0].headers)
    assert (h["dlq.stage"], h["dlq.error.class"], h["dlq.error.message"]) == (
        "process",
        "RuntimeError",
        f"{op} failed",
    )


def test_exception_without_message_uses_repr() -> None:
    def boom(v: Any) -> Any:
        raise KeyError()

    t = Topology("t")
    t.source("in", JsonSerde()).map(boom).to("out", JsonSerde())
    h = dlq_headers(proc(t).process([msg("in", {})]).outputs[0].headers)
    assert (h["dlq.error.class"], h["dlq.error.message"]) == ("KeyError", "KeyError()")


def test_sink_serializer_failure_goes_to_dlq_with_stage_process() -> None:
    t = Topology("t")
    t.source("in", JsonSerde()).map(lambda v: {"tags": set(v["tags"])}).to("out", JsonSerde())
    res = proc(t).process([msg("in", {"tags": ["a"]}, key=b"k")])
    assert [(o.topic, o.key, o.value) for o in res.outputs] == [("in.dlq", b"k", b'{"tags":["a"]}')]
    h = dlq_headers(res.outputs[0].headers)
    assert h["dlq.stage"] == "process"
    assert h["dlq.error.class"] == "streamsvc.errors.EncodeError"
    assert h["dlq.error.message"].startswith("cannot encode dict as JSON for out: ")
    assert dead(res.tally) == {("in", "process"): 1}
    assert res.tally.produced == Counter({"in.dlq": 1})


def test_outputs_of_a_record_failing_half_way_are_discarded() -> None:
    def items(v: dict[str, Any]) -> Iterator[Any]:
        yield {"i": 1}
        yield {"i": 2}
        if v["bad"] == "serialize":
            yield {"i": {3}}  # a set: JsonSerde cannot encode it
        elif v["bad"] == "raise":
            raise ValueError("third item exploded")
        yield {"i": 4}

    t = Topology("t")
    src = t.source("in", JsonSerde())
    src.to("before", JsonSerde())  # a sink reached before the failing operator
    src.flat_map(items).to("out", JsonSerde())
    res = proc(t).process(
        [
            msg("in", {"bad": "no"}, offset=0),
            msg("in", {"bad": "serialize"}, offset=1),
            msg("in", {"bad": "raise"}, offset=2),
            msg("in", {"bad": "no"}, offset=3),
        ]
    )
    assert [o.topic for o in res.outputs] == [
        "before", "out", "out", "out",
        "in.dlq",
        "in.dlq",
        "before", "out", "out", "out",
    ]  # fmt: skip
    assert [dlq_headers(o.headers)["dlq.source.offset"] for o in res.outputs if o.topic == "in.dlq"] == [
        "1",
        "2",
    ]
    assert res.tally.produced == Counter({"before": 2, "out": 6, "in.dlq": 2})
    assert res.tally.emitted == Counter({"in": 2})
    assert dead(res.tally) == {("in", "process"): 2}


def test_failure_in_second_sink_discards_first_sink_output() -> None:
    t = Topology("t")
    src = t.source("in", JsonSerde())
    src.to("ok", StringSerde())
    src.map(lambda v: {1, 2} if v["n"] == 1 else v).to("json", JsonSerde())
    res = proc(t).process([msg("in", {"n": 1}), msg("in", {"n": 2})])
    assert [o.topic for o in res.outputs] == ["in.dlq", "ok", "json"]
    assert res.tally.produced == Counter({"in.dlq": 1, "ok": 1, "json": 1})


def test_custom_dlq_topic_receives_all_stages() -> None:
    t = _validated_topology(dlq_topic="orders-errors")
    res = proc(t).process([msg("orders", b"nope"), msg("orders", {"id": None, "qty": 1})])
    assert [o.topic for o in res.outputs] == ["orders-errors", "orders-errors"]
    assert [dlq_headers(o.headers)["dlq.stage"] for o in res.outputs] == ["decode", "validate"]
    assert dead(res.tally) == {("orders", "decode"): 1, ("orders", "validate"): 1}
    assert res.tally.produced == Counter({"orders-errors": 2})


def test_good_records_around_bad_ones_keep_order() -> None:
    t = _validated_topology()
    batch = [
        msg("orders", {"id": 1, "qty": 1}, offset=10),
        msg("orders", b"\x00garbage", offset=11),
        msg("orders", {"id": 2, "qty": 5}, offset=12),
    ]
    res = proc(t).process(batch)
    assert [(o.topic, o.value) for o in res.outputs] == [
        ("out", b'{"id":1,"qty":1}'),
        ("orders.dlq", b"\x00garbage"),
        ("out", b'{"id":2,"qty":5}'),
    ]


def test_empty_batch() -> None:
    res = proc(_validated_topology()).process([])
    assert res.outputs == []
    assert res.tally.consumed == Counter()
    assert res.tally.balanced()


# ------------------------------------------------------------------------------------------------ tally


def test_tally_add_clear_and_balanced() -> None:
    a = Tally()
    a.consumed["x"] += 3
    a.emitted["x"] += 1
    a.filtered["x"] += 1
    a.dead_lettered[("x", "decode")] += 1
    a.produced["out"] += 4
    assert a.balanced()
    b = Tally()
    b.consumed["x"] += 1
    assert not b.balanced()
    a.add(b)
    assert a.consumed == Counter({"x": 4})
    assert a.produced == Counter({"out": 4})
    assert not a.balanced()
    a.dead_lettered[("x", "process")] += 1
    assert a.balanced()
    a.clear()
    assert (a.consumed, a.emitted, a.filtered, a.dead_lettered, a.produced) == (
        Counter(),
        Counter(),
        Counter(),
        Counter(),
        Counter(),
    )
    # emitted without consumed is unbalanced too
    c = Tally()
    c.emitted["y"] += 1
    assert not c.balanced()


# ------------------------------------------------------------------------------- accounting invariant

# Each generated record has a kind whose outcome the test knows in advance.
OUTCOME = {
    "emit": "emitted",
    "filtered": "filtered",
    "zero_copies": "filtered",
    "bad_json": "decode",
    "not_record": "validate",
    "null_id": "validate",
    "bad_type": "validate",
    "boom": "process",
    "unencodable": "process",
}
KINDS = tuple(OUTCOME)


@dataclass
class Spec:
    topic: str
    kind: str
    copies: int
    key: bytes | None
    offset: int = 0
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    def raw_value(self) -> bytes:
        if self.kind == "bad_json":
            return b'{"id": 1, "qty":'
        if self.kind == "not_record":
            return b"[1, 2, 3]"
        body: dict[str, Any] = {"id": self.offset, "qty": 1, "copies": self.copies}
        if self.kind == "filtered":
            body["qty"] = 0
        elif self.kind == "zero_copies":
            body["copies"] = 0
        elif self.kind == "null_id":
            body["id"] = None
        elif self.kind == "bad_type":
            body["qty"] = "one"
        elif self.kind == "boom":
            body["boom"] = True
        elif self.kind == "unencodable":
            body["unencodable"] = True
        return orjson.dumps(body)


def _explode(v: dict[str, Any]) -> dict[str, Any]:
    if v.get("boom"):
        raise RuntimeError("boom")
    return v


def _copies(v: dict[str, Any]) -> list[Any]:
    out: list[Any] = [{"id": v["id"], "copy": i} for i in range(v["copies"])]
    if v.get("unencodable"):
        out.append({"bad": {1}})  # fails at the sink serializer after the good copies
    return out


def _property_topology() -> Topology:
    t = Topology("prop")
    for logical in ("orders", "payments"):
        (
            t.source(
                logical,
                JsonSerde(),
                expectations=[is_record(), not_null("id"), is_type("qty", int)],
            )
            .map(_explode)
            .filter(lambda v: v["qty"] > 0)
            .flat_map(_copies)
            .to(f"{logical}_out", JsonSerde())
        )
    return t


PROPERTY_SETTINGS = Settings(
    app_id="prop-app",
    topics={"orders": "r.orders", "payments": "r.payments", "orders_out": "r.orders_out"},
)

spec_strategy = st.builds(
    Spec,
    topic=st.sampled_from(["r.orders", "r.payments"]),
    kind=st.sampled_from(KINDS),
    copies=st.integers(min_value=1, max_value=3),
    key=st.one_of(st.none(), st.binary(max_size=4)),
    headers=st.lists(st.tuples(st.sampled_from(["h1", "h2"]), st.one_of(st.none(), st.binary(max_size=3)))),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(spec_strategy, max_size=40))
def test_accounting_invariant_holds_exactly_for_random_batches(specs: list[Spec]) -> None:
    for i, s in enumerate(specs):
        s.offset = i
    processor = Processor(_property_topology(), PROPERTY_SETTINGS)
    batch = [
        FakeMessage(s.topic, s.raw_value(), s.key, partition_=1, offset_=s.offset, headers_=list(s.headers))
        for s in specs
    ]
    res = processor.process(batch)
    tally = res.tally

    expected_consumed: Counter[str] = Counter()
    expected_emitted: Counter[str] = Counter()
    expected_filtered: Counter[str] = Counter()
    expected_dead: Counter[tuple[str, str]] = Counter()
    expected_outputs: list[tuple[str, bytes | None]] = []
    for s in specs:
        expected_consumed[s.topic] += 1
        outcome = OUTCOME[s.kind]
        if outcome == "emitted":
            expected_emitted[s.topic] += 1
            out_topic = "r.orders_out" if s.topic == "r.orders" else "payments_out"
            expected_outputs += [(out_topic, s.key)] * s.copies
        elif outcome == "filtered":
            expected_filtered[s.topic] += 1
        else:
            expected_dead[(s.topic, outcome)] += 1
            expected_outputs.append((s.topic + ".dlq", s.key))

    # exact per-topic counts, not just the balance
    assert tally.consumed == expected_consumed
    assert tally.emitted == expected_emitted
    assert tally.filtered == expected_filtered
    assert tally.dead_lettered == expected_dead
    assert [(o.topic, o.key) for o in res.outputs] == expected_outputs

    # the invariant itself: consumed == emitted + filtered + dead-lettered, per topic
    dead_per_topic: Counter[str] = Counter()
    for (topic, _), n in tally.dead_lettered.items():
        dead_per_topic[topic] += n
    for topic in set(tally.consumed) | set(dead_per_topic):
        assert tally.consumed[topic] == tally.emitted[topic] + tally.filtered[topic] + dead_per_topic[topic]
    assert tally.balanced()
    assert sum(tally.consumed.values()) == len(batch)

    # one DLQ output per dead-lettered record, carrying the original bytes and headers
    dlq_outputs = [o for o in res.outputs if o.topic.endswith(".dlq")]
    assert len(dlq_outputs) == sum(tally.dead_lettered.values())
    bad_specs = [s for s in specs if OUTCOME[s.kind] not in ("emitted", "filtered")]
    for rec, s in zip(dlq_outputs, bad_specs, strict=True):
        assert rec.key == s.key
        assert rec.value == s.raw_value()
        assert rec.headers is not None
        n = len(s.headers)
        assert rec.headers[:n] == s.headers
        h = dlq_headers(rec.headers)
        assert sorted(h) == sorted(DLQ_KEYS)
        assert h["dlq.stage"] == OUTCOME[s.kind]
        assert h["dlq.source.topic"] == s.topic
        assert h["dlq.source.partition"] == "1"
        assert h["dlq.source.offset"] == str(s.offset)
        assert h["dlq.source.timestamp"] == str(TS)
        assert h["dlq.app"] == "prop-app"

    # produced counts every output record, DLQ included
    assert tally.produced == Counter(o.topic for o in res.outputs)
    assert sum(tally.produced.values()) == len(res.outputs)


# ---------------------------------------------------------------------------------- Topology.validate


def test_validate_rejects_topology_without_source() -> None:
    with pytest.raises(TopologyError, match=r"^topology 'empty' has no source; declare one with \.source"):
        Topology("empty").validate()


def test_processor_validates_topology() -> None:
    with pytest.raises(TopologyError, match="has no source"):
        Processor(Topology("empty"), Settings())


def test_validate_rejects_writing_to_own_source_topic() -> None:
    t = Topology("loop")
    t.source("a", JsonSerde()).to("out", JsonSerde())
    t.source("b", JsonSerde()).to("a", JsonSerde())
    with pytest.raises(TopologyError, match=r"^topology 'loop' writes to its own source topics \['a'\]$"):
        t.validate()
    with pytest.raises(TopologyError, match="writes to its own source topics"):
        Processor(t, Settings())


def test_validate_accepts_valid_topology() -> None:
    t = Topology("fine")
    t.source("a", JsonSerde()).to("b", JsonSerde())
    t.validate()
    assert t.sink_topics == {"b"}


def test_duplicate_source_is_rejected() -> None:
    t = Topology("dup")
    t.source("a", JsonSerde())
    with pytest.raises(TopologyError, match=r"^topic 'a' is already a source of topology 'dup'$"):
        t.source("a", JsonSerde())
    assert [s.topic for s in t.sources] == ["a"]


def test_duplicate_branch_names_are_rejected() -> None:
    t = Topology("br")
    src = t.source("a", JsonSerde())
    with pytest.raises(TopologyError, match=r"branch names must be unique, got \['x', 'y', 'x'\]"):
        src.branch(default="x", x=lambda v: True, y=lambda v: False)


def test_branch_without_predicates_is_rejected() -> None:
    t = Topology("br")
    with pytest.raises(TopologyError, match=r"branch\(\) needs at least one named predicate"):
        t.source("a", JsonSerde()).branch(default="d")


def test_two_sources_mapped_to_one_real_topic_are_rejected() -> None:
    topology = Topology("dup-real")
    topology.source("a", value_serde=JsonSerde()).to("out", value_serde=JsonSerde())
    topology.source("b", value_serde=JsonSerde()).to("out", value_serde=JsonSerde())
    with pytest.raises(TopologyError, match="same topic 'x'"):
        Processor(topology, Settings(topics={"a": "x", "b": "x"}))


def test_sink_mapped_onto_its_own_source_is_rejected() -> None:
    topology = Topology("loop-real")
    topology.source("a", value_serde=JsonSerde()).to("o1", value_serde=JsonSerde())
    with pytest.raises(TopologyError, match="source topics"):
        Processor(topology, Settings(topics={"o1": "a"}))


def test_failed_branch_declaration_leaves_the_topology_usable() -> None:
    topology = Topology("branch-dup")
    stream = topology.source("a", value_serde=JsonSerde())
    with pytest.raises(TopologyError):
        stream.branch(default="x", x=lambda v: True)
    stream.to("out", value_serde=JsonSerde())
    result = Processor(topology, Settings()).process([msg("a", {"v": 1})])
    assert result.tally.emitted["a"] == 1


def test_window_results_stamped_far_in_the_future_are_clamped_to_the_broker_limit() -> None:
    from streamsvc.runtime.stateful import MAX_FUTURE_TIMESTAMP_MS
    from streamsvc.windows import Count, Tumbling

    future = int(time.time() * 1000) + 24 * 3600 * 1000
    topology = Topology("clamp")
    topology.source("a", value_serde=JsonSerde(), event_time=lambda v, ts: v["t"]).window(
        "w", Tumbling(1_000), Count()
    ).to("out", value_serde=JsonSerde())
    p = proc(topology)
    p.process(
        [msg("a", {"t": future}, key=b"k", offset=0), msg("a", {"t": future + 5_000}, key=b"k", offset=1)]
    )
    closed = [
        o
        for o in p.process([msg("a", {"t": future + 9_000}, key=b"k", offset=2)]).outputs
        if o.topic == "out"
    ]
    assert closed, "windows before the watermark must have closed"
    assert all(o.timestamp_ms <= time.time() * 1000 + MAX_FUTURE_TIMESTAMP_MS for o in closed)
