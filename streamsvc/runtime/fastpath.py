"""The fast path of `Processor.process`: one tight loop per run of records of a linear source.

A source is *linear* when its tree is a chain of `map`, `filter` and `select_key` operators that ends
in plain sinks (no repartition) or in one window. Its records skip the per-record closures of the
compiled tree: decode, validate, event time, the chain, and the sink or window step run inline, with
the known serdes (bytes, JSON on orjson) called without a Python frame of their own.

The fast loop never handles a failure itself. At the first record it cannot take as is -- an exception
anywhere, a violated expectation, an output the broker would refuse -- it stops *before* touching
any output, row or count of that record and hands it to the per-record path (`Processor._slow`),
which dead-letters it with exactly the stage, reason and headers it always did; the loop then goes
on with the next record. Outputs stay in offset order. A user function of the failing record runs
once in the fast loop and again in the per-record path (as it would on a batch re-run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from streamsvc.dlq.records import OutputRecord, SourceMessage
from streamsvc.runtime.compiled import CompiledSink, CompiledSource, CompiledWindow, Tally
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.serde.json import JsonSerde
from streamsvc.serde.raw import BytesSerde
from streamsvc.topology.model import FilterOp, MapOp, SelectKeyOp, Stream, WindowOp
from streamsvc.validation.expectations import first_violation
from streamsvc.windows._codec import encode_key
from streamsvc.windows.aggregations import ColumnarAggregation, Count

if TYPE_CHECKING:
    from streamsvc.runtime.outputs import TopicLimits

Step = tuple[int, Callable[..., Any]]  # (MAP | FILTER | SELECT_KEY, the user function)
MAP, FILTER, SELECT_KEY = 0, 1, 2
SinkRow = tuple[
    str, Callable[..., Any], Callable[..., Any], SerdeContext, SerdeContext, "TopicLimits", int, int, Any
]
_PLAIN_KEYS = frozenset({bytes, str, int, type(None)})
_loads, _dumps = orjson.loads, orjson.dumps
_IDENTITY, _JSON = 1, 2  # serde kinds the loop inlines; 0: call the serde


def _kind(serde: Serde) -> int:
    if type(serde) is BytesSerde:
        return _IDENTITY
    return _JSON if type(serde) is JsonSerde else 0


@dataclass(frozen=True)
class LinearPlan:
    """The chain of a linear source and where it ends: `sink_ids` (plain sinks) or `window`."""

    steps: tuple[Step, ...]
    sink_ids: tuple[int, ...]
    window: CompiledWindow | None


def plan_of(
    src: CompiledSource, windows: Sequence[CompiledWindow], node_sinks: dict[int, list[int]]
) -> LinearPlan | None:
    """The linear plan of a source's tree, or None when it has branches, tables, joins, repartitions,
    peeks or flat-maps (those records take the per-record path)."""
    if src.typed_keys or src.source.table is not None:
        return None
    steps: list[Step] = []
    node: Stream = src.source
    while True:
        children = node.children
        if not children:
            ids = node_sinks.get(id(node), [])
            return LinearPlan(tuple(steps), tuple(ids), None) if ids else None
        if node.sinks or len(children) != 1 or children[0].branch_name is not None:
            return None
        node = children[0]
        op = node.op
        if isinstance(op, WindowOp):
            window = next((w for w in windows if w.op is op), None)
            return None if window is None else LinearPlan(tuple(steps), (), window)
        if isinstance(op, MapOp):
            steps.append((MAP, op.fn))
        elif isinstance(op, FilterOp):
            steps.append((FILTER, op.predicate))
        elif isinstance(op, SelectKeyOp):
            steps.append((SELECT_KEY, op.fn))
        else:
            return None


def run_linear(
    plan: LinearPlan,
    src: CompiledSource,
    messages: Sequence[SourceMessage],
    start: int,
    sinks: Sequence[SinkRow],
    compiled: Sequence[CompiledSink],
    outputs: list[OutputRecord],
    tally: Tally,
    timed: bool,
) -> tuple[int, bool]:
    """Process `messages[start:]` while they are of `src`'s topic. Returns (where it stopped, whether
    the record there failed and must take the per-record path)."""
    topic = src.topic
    source = src.source
    key_kind, value_kind = _kind(source.key_serde), _kind(source.value_serde)
    if not (plan.steps or source.expectations or timed) and len(plan.sink_ids) == 1:
        sink = compiled[plan.sink_ids[0]]
        kinds = (key_kind, value_kind, _kind(sink.key_serde), _kind(sink.value_serde))
        if kinds == (_IDENTITY,) * 4:
            return _run_copy(topic, sinks[plan.sink_ids[0]], messages, start, outputs, tally)
    key_of, value_of = source.key_serde.deserialize, source.value_serde.deserialize
    key_ctx, value_ctx = src.key_ctx, src.value_ctx
    expectations, event_time = source.expectations, source.event_time
    steps, window = plan.steps, plan.window
    outs = [(sinks[s], _kind(compiled[s].key_serde), _kind(compiled[s].value_serde)) for s in plan.sink_ids]
    rows_append = window.rows.append if window is not None else None
    pick = window.op.value if window is not None else None
    agg = window.op.aggregation if window is not None else None
    no_check = agg is None or (isinstance(agg, ColumnarAggregation) and agg.dtype is None)
    check = None if no_check else agg.check  # type: ignore[union-attr]
    keep_values = window is not None and not isinstance(window.op.aggregation, Count)
    append = outputs.append
    n, i = len(messages), start
    emitted = filtered = 0
    failed = False
    et = 0
    while i < n:
        msg = messages[i]
        if msg.topic() != topic:
            break
        try:
            k = msg.key()
            if key_kind != _IDENTITY:
                k = key_of(k, key_ctx)
            v = msg.value()
            if value_kind == _JSON:
                v = _loads(v)  # type: ignore[arg-type]  # None raises: the per-record path takes it
            elif value_kind != _IDENTITY:
                v = value_of(v, value_ctx)
            if expectations and first_violation(expectations, v) is not None:
                failed = True
                break
            ts = msg.timestamp()[1]
            if ts < 0:
                ts = 0
            if timed:
                et = int(event_time(v, ts))
            keep = True
            for kind, fn in steps:
                if kind == MAP:
                    v = fn(v)
                elif kind == FILTER:
                    if not fn(v):
                        keep = False
                        break
                else:
                    k = fn(k, v)
            if not keep:
                filtered += 1
                i += 1
                continue
            if rows_append is not None:
                if k.__class__ not in _PLAIN_KEYS:
                    encode_key(k)
                value = v if pick is None else pick(v)
                if check is not None:
                    check(value)
                rows_append((i, msg.partition() or 0, k, et, value if keep_values else None))
            else:
                records = []
                for (sink_topic, ser_key, ser_value, kctx, vctx, lim, lo, hi, _), kk, vk in outs:
                    kb = k if kk == _IDENTITY and (k is None or k.__class__ is bytes) else ser_key(k, kctx)
                    if vk == _IDENTITY and (v is None or v.__class__ is bytes):
                        vb = v
                    elif vk == _JSON and v is not None:
                        vb = _dumps(v)
                    else:
                        vb = ser_value(v, vctx)
                    if (len(kb) if kb else 0) + (len(vb) if vb else 0) > lim.max_bytes or (
                        ts and not lo <= ts <= hi
                    ):
                        raise _Refused
                    records.append(OutputRecord(sink_topic, kb, vb, ts))
                for rec in records:
                    append(rec)
        except Exception:
            failed = True
            break
        emitted += 1
        i += 1
    if i > start:
        tally.consumed[topic] += i - start
    if emitted:
        tally.emitted[topic] += emitted
        for (sink_topic, *_), _, _ in outs:
            tally.produced[sink_topic] += emitted
    if filtered:
        tally.filtered[topic] += filtered
    return i, failed


def _run_copy(
    topic: str,
    sink: SinkRow,
    messages: Sequence[SourceMessage],
    start: int,
    outputs: list[OutputRecord],
    tally: Tally,
) -> tuple[int, bool]:
    """`run_linear` of a bytes-to-bytes copy into one sink (no operators, expectations or event time):
    key and value go out as they came, if they are bytes (or null) and the broker would take them."""
    sink_topic, lim, lo, hi = sink[0], sink[5], sink[6], sink[7]
    max_bytes = lim.max_bytes
    append = outputs.append
    n, i = len(messages), start
    failed = False
    while i < n:
        msg = messages[i]
        if msg.topic() != topic:
            break
        k, v = msg.key(), msg.value()
        ts = msg.timestamp()[1]
        if ts < 0:
            ts = 0
        if (
            (k is not None and k.__class__ is not bytes)
            or (v is not None and v.__class__ is not bytes)
            or (len(k) if k else 0) + (len(v) if v else 0) > max_bytes
            or (ts and not lo <= ts <= hi)
        ):
            failed = True
            break
        append(OutputRecord(sink_topic, k, v, ts))
        i += 1
    if i > start:
        tally.consumed[topic] += i - start
        tally.emitted[topic] += i - start
        tally.produced[sink_topic] += i - start
    return i, failed


class _Refused(Exception):
    """An output the broker would refuse: the per-record path dead-letters its record."""
