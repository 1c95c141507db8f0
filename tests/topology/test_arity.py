"""Operator functions with the wrong number of parameters fail when the topology is built, with a message
naming the expected call, instead of sending every record to the DLQ at run time."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from streamsvc.errors import TopologyError
from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.windows import Sum, Tumbling


def _source() -> Any:
    return Topology("t").source("in", JsonSerde())


def test_select_key_with_one_argument_is_refused() -> None:
    with pytest.raises(TopologyError, match=r"select_key\(\) is called as fn\(key, value\)"):
        _source().select_key(lambda order: order["customer"])


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda s: s.map(lambda k, v: v), r"map\(\) is called as fn\(value\)"),
        (lambda s: s.filter(lambda k, v: True), r"filter\(\) is called as fn\(value\)"),
        (lambda s: s.flat_map(lambda k, v: [v]), r"flat_map\(\)"),
        (lambda s: s.peek(lambda v: None), r"peek\(\) is called as fn\(key, value\)"),
        (lambda s: s.branch(big=lambda k, v: True), r"branch\(\) predicate 'big'"),
        (lambda s: s.window("w", Tumbling(10), Sum(), value=lambda k, v: v), r"window\(value=\.\.\.\)"),
        (lambda s: s.window("w", Tumbling(10), Sum(), emit="final-ish"), r"emit must be"),
        (lambda s: s.group_by(lambda v: v, name="g"), r"select_key\(\)"),
        (lambda s: s.map("not a function"), r"map\(\) must be a function"),
    ],
)
def test_wrong_arity_is_refused(build: Any, expected: str) -> None:
    with pytest.raises(TopologyError, match=expected):
        build(_source())


def test_event_time_and_join_combines_are_checked() -> None:
    topology = Topology("t")
    with pytest.raises(TopologyError, match=r"event_time"):
        topology.source("in", JsonSerde(), event_time=lambda v: v["ts"])
    left, right = topology.source("l", JsonSerde()), topology.source("r", JsonSerde())
    with pytest.raises(TopologyError, match=r"interval_join\(\) combine"):
        left.interval_join(right, "j", 0, 10, combine=lambda pair: pair)
    with pytest.raises(TopologyError, match=r"join\(\) combine"):
        left.join(topology.table("customers"), lambda v: v)


def test_right_arities_defaults_varargs_and_partials_pass() -> None:
    def keyed(key: Any, value: Any, suffix: str = "") -> Any:
        return key

    stream = _source()
    stream.select_key(keyed).peek(lambda *args: None).map(functools.partial(lambda a, v: v, 1))
    stream.map(str).filter(bool).flat_map(lambda v, *rest: [v])
