"""Executes a compiled topology on batches of consumed messages, without touching Kafka.

For each message: decode key and value (DLQ `decode`), check expectations (DLQ `validate`), run the
operator tree and serialize its outputs (DLQ `process`). Every consumed message ends in exactly one
outcome — emitted (>= 1 output, or absorbed into state), filtered (0 outputs), dead-lettered, or late
(all its windows had closed) — which is what makes the accounting invariant exact. Outputs of a
message that fails half-way are discarded with it. Records that reach windows or interval joins are
folded into them per partition after the loop, so those engines work on columns. Linear sources (a
chain of map/filter/select_key into plain sinks or one window) take the fast loop of `runtime.fastpath`.
Compilation (topics, sinks, stores, sub-topologies) is in `streamsvc.runtime.compiler`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord, SourceMessage, Stage, dead_letter, error_class_of
from streamsvc.errors import DecodeError
from streamsvc.runtime.compiled import (
    ABSORBED,
    BatchResult,
    CompiledIntervalJoin,
    CompiledSource,
    CompiledWindow,
    Tally,
)
from streamsvc.runtime.compiler import TopologyCompiler
from streamsvc.runtime.fastpath import SinkRow, run_linear
from streamsvc.runtime.outputs import Quarantine, RecordRejected, TopicLimits
from streamsvc.runtime.repartition import decode_typed_key
from streamsvc.runtime.stateful import advance_idle, fold
from streamsvc.topology.model import Topology
from streamsvc.validation.expectations import first_violation


class Processor(TopologyCompiler):
    """A topology compiled against concrete topic names, ready to process message batches."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        self.quarantine = Quarantine()
        self._limits: dict[str, TopicLimits] = {}
        self._default_limits = TopicLimits()
        self.fast_path = True  # False: every record takes the per-record path (tests compare the two)
        super().__init__(topology, settings)

    def limits(self, topic: str) -> TopicLimits:
        """What the broker accepts on `topic` (`set_limits`; defaults until then)."""
        return self._limits.get(topic, self._default_limits)

    def set_limits(self, limits: Mapping[str, TopicLimits], default: TopicLimits | None = None) -> None:
        self._limits = dict(limits)
        if default is not None:
            self._default_limits = default

    def process(self, messages: Sequence[SourceMessage]) -> BatchResult:
        """Process one batch. A bad record becomes a DLQ output and the rest goes on; only a record that
        fails inside a stateful engine raises `RetryBatch` (it is poisoned for the re-run).

        Runs of a linear source (`runtime.fastpath`) take the fast loop; a record it cannot take, and
        every record of another source or of a batch under quarantine, takes the per-record path.
        Records that reach a window are folded into it per partition after the loop, on columns.
        """
        outputs: list[OutputRecord] = []
        tally = Tally()
        now_ms = int(time.time() * 1000)
        sinks: list[SinkRow] = []
        for s in self.sinks:
            lim = self.limits(s.topic)
            lo, hi = now_ms - lim.past_ms, now_ms + lim.future_ms
            ser_key, ser_value = s.key_serde.serialize, s.value_serde.serialize
            internal = s if s.event_time else None  # a repartition topic: `record` stamps event time
            sinks.append((s.topic, ser_key, ser_value, s.key_ctx, s.value_ctx, lim, lo, hi, internal))
        windowed = bool(self.windows) or bool(self.interval_joins)
        timed = windowed or bool(self.repartitions)
        plans = self.plans if self.fast_path and not self.quarantine.poisoned else {}
        if not plans or self.quarantine.blocked:
            self._slow(messages, 0, len(messages), sinks, outputs, tally, now_ms)
        else:
            i, n = 0, len(messages)
            while i < n:
                topic = messages[i].topic() or ""
                plan = plans.get(topic)
                if plan is None:  # the run of a source without a plan, per record
                    j = i + 1
                    while j < n and (messages[j].topic() or "") == topic:
                        j += 1
                    self._slow(messages, i, j, sinks, outputs, tally, now_ms)
                    i = j
                    continue
                src = self.sources[topic]
                i, failed = run_linear(plan, src, messages, i, sinks, self.sinks, outputs, tally, timed)
                if failed:
                    self._slow(messages, i, i + 1, sinks, outputs, tally, now_ms)
                    i += 1
        if windowed:
            fold(self, messages, outputs, tally, now_ms)
        return BatchResult(outputs, tally)

    def _slow(
        self,
        messages: Sequence[SourceMessage],
        start: int,
        end: int,
        sinks: Sequence[SinkRow],
        outputs: list[OutputRecord],
        tally: Tally,
        now_ms: int,
    ) -> None:
        """The per-record path over `messages[start:end]`: the compiled tree's closures, one record at a
        time, with every failure dead-lettered at its stage. Lookups are hoisted out of the loop and a
        failed record's partial outputs are cut off the shared output list."""
        append = outputs.append
        consumed, emitted, filtered, produced = tally.consumed, tally.emitted, tally.filtered, tally.produced
        windowed = bool(self.windows) or bool(self.interval_joins)
        timed = windowed or bool(self.repartitions)
        stateful = timed or bool(self.tables) or bool(self.global_tables)
        ctx = self._ctx
        poisoned, blocked = self.quarantine.poisoned, self.quarantine.blocked
        current_topic: str | None = None
        for index in range(start, end):
            msg = messages[index]
            topic = msg.topic() or ""
            if topic != current_topic:  # batches come in runs of one topic: re-bind only on a change
                current_topic = topic
                src = self.sources[topic]
                key_of, value_of = src.source.key_serde.deserialize, src.source.value_serde.deserialize
                key_ctx, value_ctx, emit = src.key_ctx, src.value_ctx, src.emit
                expectations, event_time = src.source.expectations, src.source.event_time
                typed = src.typed_keys
            consumed[topic] += 1
            if poisoned:
                hit = poisoned.get((topic, msg.partition() or 0, msg.offset() or 0))
                if hit is not None:
                    self._dead(outputs, tally, msg, src, hit[0], hit[1])
                    continue
            stage: Stage = "decode"
            mark = len(outputs)
            try:
                key = decode_typed_key(msg.key(), msg.headers()) if typed else key_of(msg.key(), key_ctx)
                value = value_of(msg.value(), value_ctx)
                stage = "validate"
                violation = first_violation(expectations, value) if expectations else None
                if violation is not None:
                    self._dead(outputs, tally, msg, src, "validate", violation)
                    continue
                stage = "process"
                ts = msg.timestamp()[1]
                if ts < 0:  # no timestamp on the source record: let the broker assign one
                    ts = 0
                if stateful:
                    ctx[0], ctx[1] = index, msg.partition() or 0
                    if timed:
                        ctx[2] = int(event_time(value, ts))
                results: list[tuple[int, Any, Any]] = []
                emit(key, value, results)
                for sid, k, v in results:
                    if sid == ABSORBED:
                        continue
                    sink_topic, ser_key, ser_value, key_ctx_out, value_ctx_out, lim, lo, hi, internal = sinks[
                        sid
                    ]
                    if internal is not None:
                        rec = internal.record(k, v, ctx[2])
                        kb, vb = rec.key, rec.value
                        lim.check(kb, vb, rec.timestamp_ms, now_ms)
                    else:
                        kb, vb = ser_key(k, key_ctx_out), ser_value(v, value_ctx_out)
                        if (len(kb) if kb else 0) + (len(vb) if vb else 0) > lim.max_bytes or (
                            ts and not lo <= ts <= hi
                        ):
                            lim.check(kb, vb, ts, now_ms)
                        rec = OutputRecord(sink_topic, kb, vb, ts)
                    if blocked and (sink_topic, kb, vb) in blocked:
                        raise RecordRejected(blocked[(sink_topic, kb, vb)])
                    append(rec)
            except DecodeError as exc:
                del outputs[mark:]
                self._forget_rows(index)
                self._dead(outputs, tally, msg, src, "decode" if stage == "decode" else "process", exc)
                continue
            except Exception as exc:  # an operator or a serializer raised: the record goes to the DLQ
                del outputs[mark:]
                self._forget_rows(index)
                self._dead(outputs, tally, msg, src, stage, exc)
                continue
            if results:
                emitted[topic] += 1
                for sid, _, _ in results:
                    if sid != ABSORBED:
                        produced[sinks[sid][0]] += 1
            else:
                filtered[topic] += 1

    def advance_idle(self, partition: int, wall_clock_ms: int) -> BatchResult:
        """Raise the watermark of an idle partition's windows to the wall clock (minus each window's
        allowed lateness) and emit the windows that closes. Opt-in (`wall_clock_fallback`): a replay
        without the same idle periods may close windows later."""
        return BatchResult(*advance_idle(self, partition, wall_clock_ms))

    def _forget_rows(self, index: int) -> None:
        """Take back the window and join rows of a record that failed after reaching them."""
        stores: list[CompiledWindow | CompiledIntervalJoin] = [*self.windows, *self.interval_joins.values()]
        for store in stores:
            rows: list[Any] = store.rows
            while rows and rows[-1][0] == index:
                rows.pop()

    def _dead(
        self,
        outputs: list[OutputRecord],
        tally: Tally,
        msg: SourceMessage,
        src: CompiledSource,
        stage: Stage,
        exc: BaseException | str,
    ) -> None:
        rec = self.dead_letter(msg, src.dlq_topic, stage, exc)
        outputs.append(rec)
        tally.dead_lettered[(src.topic, stage)] += 1
        tally.error_classes[(src.topic, stage, error_class_of(exc))] += 1
        tally.produced[rec.topic] += 1

    def dead_letter(
        self, msg: SourceMessage, dlq_topic: str, stage: Stage, exc: BaseException | str
    ) -> OutputRecord:
        """The DLQ record of `msg`, cut to what the DLQ topic takes; down to headers alone when the
        broker refused even that before."""
        rec = dead_letter(msg, dlq_topic, stage, exc, self.app, self.limits(dlq_topic).max_bytes)
        if self.quarantine.blocked and (rec.topic, rec.key, rec.value) in self.quarantine.blocked:
            rec = dead_letter(msg, dlq_topic, stage, exc, self.app, max_bytes=0)
        return rec
