"""Folding a batch into the stateful operators (windows, interval joins) and sending their results on.

The per-record loop of `Processor.process` only collects the rows that reach a window or an interval
join; they are folded here per partition, in offset order, so the engines work on columns. A record
that fails inside an engine (`RecordFoldError`) leaves that engine's state undefined: it is poisoned
in the quarantine and `RetryBatch` asks the runtime to abort, restore and re-run the batch, with the
record dead-lettered this time. A result that cannot be sent on (its downstream operator or serializer
raises, the broker would refuse it, or an interval join's `combine` raised) goes to the source's DLQ
as JSON, so one bad result never blocks the partition.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from streamsvc.dlq.records import Headers, OutputRecord, SourceMessage, error_class_name
from streamsvc.errors import LateRecordError, RecordFoldError
from streamsvc.joins.interval import CombineFailed
from streamsvc.runtime.compiled import CompiledIntervalJoin, CompiledWindow, Tally
from streamsvc.runtime.outputs import RecordRejected
from streamsvc.runtime.task import RetryBatch
from streamsvc.serde.windowed import Windowed
from streamsvc.windows.aggregations import Count
from streamsvc.windows.results import WindowResult

if TYPE_CHECKING:
    from streamsvc.runtime.processor import Processor

MAX_FUTURE_TIMESTAMP_MS = 10 * 60 * 1000
_PARTITION, _KEY, _TIME, _VALUE = itemgetter(1), itemgetter(2), itemgetter(3), itemgetter(4)  # of a row


def fold(
    proc: Processor,
    messages: Sequence[SourceMessage],
    outputs: list[OutputRecord],
    tally: Tally,
    now_ms: int,
) -> None:
    """Fold this batch's window and join rows; a record late for any of them goes to the DLQ as late
    (once) and is counted late instead of emitted; its other outputs still go out."""
    late_hits: Counter[int] = Counter()
    for window in proc.windows:
        _fold_window(proc, window, messages, outputs, tally, late_hits, now_ms)
    for join in proc.interval_joins.values():
        _fold_join(proc, join, messages, outputs, tally, late_hits, now_ms)
    for index in sorted(late_hits):
        msg = messages[index]
        src = proc.sources[msg.topic() or ""]
        tally.emitted[src.topic] -= 1
        tally.late[src.topic] += 1
        late = LateRecordError("the record is behind its partition's watermark: its windows closed")
        rec = proc.dead_letter(msg, src.dlq_topic, "late", late)
        outputs.append(rec)
        tally.produced[rec.topic] += 1


def _poisoned(proc: Processor, msg: SourceMessage, store: str, exc: RecordFoldError) -> RetryBatch:
    proc.quarantine.poison(msg, "process", exc.cause)
    where = f"{msg.topic()}:{msg.partition()}@{msg.offset()}"
    return RetryBatch(f"record {where} failed in {store!r}: {exc}")


def _fold_window(
    proc: Processor,
    window: CompiledWindow,
    messages: Sequence[SourceMessage],
    outputs: list[OutputRecord],
    tally: Tally,
    late_hits: Counter[int],
    now_ms: int,
) -> None:
    if not window.rows:
        return
    by_partition: dict[int, list[tuple[int, int, Any, int, Any]]] = {}
    for partition, run in groupby(window.rows, _PARTITION):  # rows come in runs of one partition
        by_partition.setdefault(partition, []).extend(run)
    window.rows.clear()
    wants_values = not isinstance(window.op.aggregation, Count)
    for partition, rows in by_partition.items():
        try:
            out = window.engine.process(
                partition,
                list(map(_KEY, rows)),
                np.fromiter(map(_TIME, rows), dtype=np.int64, count=len(rows)),
                list(map(_VALUE, rows)) if wants_values else None,
            )
        except RecordFoldError as exc:
            raise _poisoned(proc, messages[rows[exc.index][0]], window.name, exc) from exc
        for j in np.flatnonzero(out.late):
            late_hits[rows[j][0]] += 1
        _emit_windows(proc, window, out.results, outputs, tally, now_ms)


def _emit_windows(
    proc: Processor,
    window: CompiledWindow,
    results: list[WindowResult],
    outputs: list[OutputRecord],
    tally: Tally,
    now_ms: int,
) -> None:
    """Send window results on: keyed by `Windowed(key, start, end)` with the aggregate as value (a
    retraction: None), or, in the legacy layout, by the record key with `{"start", "end", "value"}`."""
    legacy = window.op.key_format == "legacy"
    for r in results:
        if legacy:
            key: Any = r.key
            value = None if r.tombstone else {"start": r.start_ms, "end": r.end_ms, "value": _plain(r.value)}
        else:
            key, value = Windowed(r.key, r.start_ms, r.end_ms), None if r.tombstone else _plain(r.value)
        emit_derived(proc, window, key, value, r.end_ms, outputs, tally, now_ms)


def _fold_join(
    proc: Processor,
    join: CompiledIntervalJoin,
    messages: Sequence[SourceMessage],
    outputs: list[OutputRecord],
    tally: Tally,
    late_hits: Counter[int],
    now_ms: int,
) -> None:
    by_partition: dict[int, list[tuple[int, int, int, Any, int, Any]]] = {}
    for row in join.rows:
        by_partition.setdefault(row[1], []).append(row)
    join.rows.clear()
    for partition, rows in by_partition.items():
        start = 0
        while start < len(rows):  # consecutive runs of one side, in arrival order
            side, end = rows[start][2], start
            while end < len(rows) and rows[end][2] == side:
                end += 1
            run = rows[start:end]
            process = join.engine.process_left if side == 0 else join.engine.process_right
            try:
                out = process(partition, [r[3] for r in run], [r[4] for r in run], [r[5] for r in run])
            except RecordFoldError as exc:
                raise _poisoned(proc, messages[run[exc.index][0]], join.name, exc) from exc
            for j in np.flatnonzero(out.late):
                late_hits[run[j][0]] += 1
            for result in out.results:
                emit_derived(proc, join, result.key, result.value, result.time_ms, outputs, tally, now_ms)
            start = end


def advance_idle(proc: Processor, partition: int, wall_clock_ms: int) -> tuple[list[OutputRecord], Tally]:
    """Raise the watermark of an idle partition's windows to the wall clock (minus each window's
    allowed lateness) and emit the windows that closes."""
    outputs: list[OutputRecord] = []
    tally = Tally()
    now_ms = int(time.time() * 1000)
    for window in proc.windows:
        if partition not in window.engine.partitions:
            continue
        closed = window.engine.advance(partition, wall_clock_ms - window.op.allowed_lateness_ms)
        _emit_windows(proc, window, closed, outputs, tally, now_ms)
    return outputs, tally


def emit_derived(
    proc: Processor,
    store: CompiledWindow | CompiledIntervalJoin,
    key: Any,
    value: Any,
    timestamp_ms: int,
    outputs: list[OutputRecord],
    tally: Tally,
    now_ms: int,
) -> None:
    """Send a window or join result down the rest of the topology to its sinks."""
    # Results carry event time, but the broker refuses timestamps too far ahead of its clock
    # (log.message.timestamp.after.max.ms, 1 h by default in Kafka 4): clamp to a margin ahead of it.
    timestamp_ms = min(timestamp_ms, now_ms + MAX_FUTURE_TIMESTAMP_MS)
    downstream: list[tuple[int, Any, Any]] = []
    mark = len(outputs)
    blocked = proc.quarantine.blocked
    try:
        if isinstance(value, CombineFailed):
            raise value.error
        store.forward(key, value, downstream)
        for sid, k, v in downstream:
            sink = proc.sinks[sid]
            rec = sink.record(k, v, timestamp_ms)
            proc.limits(sink.topic).check(rec.key, rec.value, timestamp_ms, now_ms)
            if blocked and (sink.topic, rec.key, rec.value) in blocked:
                raise RecordRejected(blocked[(sink.topic, rec.key, rec.value)])
            outputs.append(rec)
    except Exception as exc:  # the result is kept, as JSON, in the source's DLQ
        del outputs[mark:]
        outputs.append(_dead_result(proc, store, key, value, exc))
        tally.produced[store.dlq_topic] += 1
        return
    for rec in outputs[mark:]:
        tally.produced[rec.topic] += 1


def _dead_result(
    proc: Processor, store: CompiledWindow | CompiledIntervalJoin, key: Any, value: Any, exc: Exception
) -> OutputRecord:
    raw_key = key if isinstance(key, bytes) else str(key).encode()
    headers: Headers = [
        ("dlq.error.class", error_class_name(exc).encode()),
        ("dlq.error.message", str(exc).encode(errors="replace")[:4096]),
        ("dlq.stage", b"process"),
        ("dlq.source.topic", store.source_topic.encode()),
        ("dlq.store", store.name.encode()),
        ("dlq.app", proc.app.encode()),
    ]
    shown = {"left": value.left, "right": value.right} if isinstance(value, CombineFailed) else value
    body = orjson.dumps(shown, default=repr, option=orjson.OPT_NON_STR_KEYS)
    limit = proc.limits(store.dlq_topic).max_bytes
    if len(body) + len(raw_key) > limit:
        headers += [("dlq.payload.truncated", b"true"), ("dlq.payload.size", str(len(body)).encode())]
        body = body[: max(0, limit - len(raw_key) - 1024)]
    return OutputRecord(store.dlq_topic, raw_key, body, 0, headers)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so that any serde can write window values."""
    return value.item() if isinstance(value, np.generic) else value
