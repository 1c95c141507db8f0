"""The vectorised merge of `TimeSync` equals Kafka Streams' head-by-head pick, and waits as
`max.task.idle.ms` says (pure unit tests; the broker-level acceptance is in test_timesync_kafka.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from streamsvc.runtime.timesync import TimeSync, copartition_groups


@dataclass
class Rec:
    topic_: str
    partition_: int
    offset_: int
    ts: int

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


def head_merge(queues: list[list[Rec]]) -> list[Rec]:
    """Reference: repeatedly the head with the smallest timestamp (ties: earlier queue)."""
    qs = [list(q) for q in queues]
    out = []
    while all(qs):
        i = min(range(len(qs)), key=lambda j: (qs[j][0].ts, j))
        out.append(qs[i].pop(0))
    return out


stamps = st.lists(st.integers(0, 30), max_size=25)


@settings(max_examples=300, deadline=None)
@given(st.lists(stamps, min_size=2, max_size=3))
def test_merge_equals_head_by_head_until_a_partition_runs_dry(columns: list[list[int]]) -> None:
    topics = ["a", "b", "c"][: len(columns)]
    queues = [[Rec(t, 0, o, ts) for o, ts in enumerate(col)] for t, col in zip(topics, columns, strict=True)]
    sync = TimeSync([topics], max_task_idle_ms=0, max_buffered=10_000)
    sync.assign([(t, 0) for t in topics])
    assert sync.add([r for q in queues for r in q]) == []
    got = sync.take(0.0, caught_up=lambda tp: False)  # more is on the broker: wait for every partition
    assert got == head_merge(queues)


@settings(max_examples=200, deadline=None)
@given(st.lists(stamps, min_size=2, max_size=3), st.data())
def test_fetch_boundaries_do_not_change_the_order(columns: list[list[int]], data: st.DataObject) -> None:
    topics = ["a", "b", "c"][: len(columns)]
    recs = [[Rec(t, 0, o, ts) for o, ts in enumerate(col)] for t, col in zip(topics, columns, strict=True)]
    whole = TimeSync([topics], 0, 10_000)
    whole.assign([(t, 0) for t in topics])
    whole.add([r for q in recs for r in q])
    at_once = whole.take(0.0, lambda tp: True)  # everything fetched: caught up
    pieces = TimeSync([topics], 0, 10_000)
    pieces.assign([(t, 0) for t in topics])
    fetched = [0] * len(recs)
    out: list[Rec] = []
    while any(f < len(q) for f, q in zip(fetched, recs, strict=True)):
        i = data.draw(st.sampled_from([j for j, q in enumerate(recs) if fetched[j] < len(q)]))
        n = data.draw(st.integers(1, len(recs[i]) - fetched[i]))
        pieces.add(recs[i][fetched[i] : fetched[i] + n])
        fetched[i] += n
        out += pieces.take(0.0, lambda tp: fetched[topics.index(tp[0])] == len(recs[topics.index(tp[0])]))
    assert out == at_once
    assert sorted((r.topic_, r.offset_) for r in out) == sorted(
        (r.topic_, r.offset_) for q in recs for r in q
    )


def test_a_caught_up_empty_partition_is_waited_for_max_task_idle_ms() -> None:
    sync = TimeSync([["table", "stream"]], max_task_idle_ms=500, max_buffered=100)
    sync.assign([("table", 0), ("stream", 0)])
    sync.add([Rec("stream", 0, 0, 10)])
    assert sync.take(1.0, lambda tp: True) == []
    assert sync.take(1.4, lambda tp: True) == []
    assert [r.offset_ for r in sync.take(1.5, lambda tp: True)] == [0]
    sync.add([Rec("stream", 0, 1, 11)])
    assert sync.take(9.0, lambda tp: tp[0] == "stream") == [], "lag on the table: always wait"


def test_disabled_sync_and_ungrouped_topics_pass_straight_through() -> None:
    off = TimeSync([["a", "b"]], max_task_idle_ms=-1, max_buffered=100)
    off.assign([("a", 0)])
    recs = [Rec("a", 0, 0, 5)]
    assert off.add(recs) == recs  # type: ignore[arg-type]
    on = TimeSync([["a", "b"]], 0, 100)
    on.assign([("a", 0), ("b", 0), ("x", 0)])
    other = Rec("x", 0, 0, 1)
    assert on.add([other, Rec("a", 0, 0, 2)]) == [other]  # type: ignore[list-item]


def test_flow_control_pauses_full_partitions() -> None:
    sync = TimeSync([["a", "b"]], 0, max_buffered=4)
    sync.assign([("a", 0), ("b", 0)])
    sync.add([Rec("a", 0, o, o) for o in range(6)])
    assert sync.flow() == ([("a", 0)], [])
    sync.add([Rec("b", 0, 0, 100)])
    sync.take(0.0, lambda tp: True)
    assert sync.flow() == ([], [("a", 0)])


def test_groups_put_tables_and_right_sides_first() -> None:
    assert copartition_groups([("orders", "customers"), ("orders", "payments"), ("x", "y")]) == [
        ["customers", "payments", "orders"],
        ["y", "x"],
    ]
