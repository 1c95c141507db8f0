"""Executes a topology on batches of consumed messages, without touching Kafka.

For each message: decode key and value (DLQ `decode`), check expectations (DLQ `validate`), run the
operator tree and serialize its outputs (DLQ `process`). Every consumed message ends in exactly one
outcome — emitted (>= 1 output, or absorbed into state), filtered (0 outputs), dead-lettered, or late
(all its windows had closed) — which is what makes the accounting invariant exact. Outputs of a
message that fails half-way are discarded with it. Records that reach windows or interval joins are
folded into them per partition after the per-record loop, so those engines work on columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord, SourceMessage, Stage, dead_letter, error_class_of
from streamsvc.errors import DecodeError, TopologyError
from streamsvc.joins.interval import IntervalJoin
from streamsvc.joins.table import CdcTable, GlobalTable
from streamsvc.runtime.compiled import (
    ABSORBED,
    BatchResult,
    CompiledGlobalTable,
    CompiledIntervalJoin,
    CompiledSink,
    CompiledSource,
    CompiledStore,
    CompiledTable,
    CompiledWindow,
    Emit,
    Tally,
)
from streamsvc.runtime.outputs import Quarantine, RecordRejected, TopicLimits
from streamsvc.runtime.stateful import Absorbed, advance_idle, fold
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.state.changelog import changelog_topic
from streamsvc.state.store import KeyValueStore, SqliteStore
from streamsvc.topology.model import (
    BranchOp,
    FilterOp,
    FlatMapOp,
    IntervalJoinOp,
    IntervalJoinRightOp,
    JoinTableOp,
    MapOp,
    PeekOp,
    SelectKeyOp,
    Source,
    Stream,
    TableRef,
    Topology,
    WindowOp,
)
from streamsvc.validation.expectations import first_violation
from streamsvc.windows._codec import encode_key
from streamsvc.windows.operator import WindowedAggregation

_PLAIN_KEYS = frozenset({bytes, str, int, type(None)})


class Processor:
    """A topology compiled against concrete topic names, ready to process message batches."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        topology.validate()
        self.app = settings.app_id
        self.agent = topology.name
        self.sinks: list[CompiledSink] = []
        self.windows: list[CompiledWindow] = []
        self.tables: dict[str, CompiledTable] = {}
        self.interval_joins: dict[str, CompiledIntervalJoin] = {}
        self.global_tables = {
            spec.ref.name: CompiledGlobalTable(
                spec.ref.name, GlobalTable(spec.ref.name), settings.topic(spec.ref.topic), spec.value_serde
            )
            for spec in topology.global_tables
        }
        self.copartitioned: list[tuple[str, str]] = []  # (stream topic, table topic) pairs joined
        self._ctx = [0, 0, 0]  # message number, partition, event time of the record being processed
        self.quarantine = Quarantine()
        self._limits: dict[str, TopicLimits] = {}
        self._default_limits = TopicLimits()
        self.sources: dict[str, CompiledSource] = {}
        for src in topology.sources:
            if src.table is not None:
                real = settings.topic(src.topic)
                self.tables[src.table.name] = CompiledTable(
                    src.table.name,
                    CdcTable(src.table.name, self._store_factory(settings, src.table)),
                    real,
                    changelog_topic(settings.app_id, self.agent, src.table.name),
                )
        for src in topology.sources:
            real = settings.topic(src.topic)
            dlq = settings.topic(src.dlq_topic) if src.dlq_topic else real + settings.dlq_suffix
            if real in self.sources:
                raise TopologyError(f"two sources of {topology.name!r} map to the same topic {real!r}")
            self.sources[real] = CompiledSource(
                topic=real,
                dlq_topic=dlq,
                source=src,
                key_ctx=SerdeContext(real, is_key=True),
                value_ctx=SerdeContext(real, is_key=False),
                emit=self._compile_table_source(src)
                if src.table
                else self._compile(src, settings, real, dlq),
            )

        for join in self.interval_joins.values():
            if not join.source_topic or not join.right_topic:
                raise TopologyError(f"interval join {join.name!r} lacks its left or right input")
            self.copartitioned.append((join.source_topic, join.right_topic))
        loops = set(self.sources) & set(self.output_topics)
        if loops:
            raise TopologyError(f"{topology.name!r} would write to its source topics {sorted(loops)}")

    def _store_factory(self, settings: Settings, table: TableRef) -> Callable[[int], KeyValueStore] | None:
        if table.store != "disk":
            return None
        # The instance id keeps two workers on one host apart; files are rebuilt on every assignment.
        base = settings.effective_state_dir / settings.app_id / settings.effective_instance_id / self.agent
        return lambda partition: SqliteStore(base / table.name / f"{partition}.sqlite")

    @property
    def stores(self) -> list[CompiledStore]:
        """Every state store (windows and tables), for changelog writes, restore and revocation."""
        return [*self.windows, *self.tables.values(), *self.interval_joins.values()]

    @property
    def source_topics(self) -> list[str]:
        return list(self.sources)

    @property
    def output_topics(self) -> list[str]:
        return sorted({s.topic for s in self.sinks} | {s.dlq_topic for s in self.sources.values()})

    def serdes(self) -> list[Serde]:
        """Every serde in the topology (the runtime binds the schema registry to those needing one)."""
        found: list[Serde] = []
        for s in self.sources.values():
            found += [s.source.key_serde, s.source.value_serde]
        for sink in self.sinks:
            found += [sink.key_serde, sink.value_serde]
        return found

    def _compile(self, node: Stream, settings: Settings, source: str, dlq: str) -> Emit:
        children = [self._compile(c, settings, source, dlq) for c in node.children if c.branch_name is None]
        sink_ids: list[int] = []
        for spec in node.sinks:
            real = settings.topic(spec.topic)
            self.sinks.append(
                CompiledSink(
                    real, spec.key_serde, spec.value_serde, SerdeContext(real, True), SerdeContext(real)
                )
            )
            sink_ids.append(len(self.sinks) - 1)

        def forward(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            for sid in sink_ids:
                out.append((sid, k, v))
            for child in children:
                child(k, v, out)

        op = node.op
        if op is None:
            return forward
        if isinstance(op, MapOp):
            fn = op.fn
            return lambda k, v, out: forward(k, fn(v), out)
        if isinstance(op, SelectKeyOp):
            key_fn = op.fn
            return lambda k, v, out: forward(key_fn(k, v), v, out)
        if isinstance(op, FilterOp):
            pred = op.predicate

            def filtered(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                if pred(v):
                    forward(k, v, out)

            return filtered
        if isinstance(op, FlatMapOp):
            many = op.fn

            def flat(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                for item in many(v):
                    forward(k, item, out)

            return flat
        if isinstance(op, PeekOp):
            side = op.fn

            def peek(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                side(k, v)
                forward(k, v, out)

            return peek
        if isinstance(op, BranchOp):
            return self._compile_branch(node, op, settings, source, dlq)
        if isinstance(op, WindowOp):
            return self._compile_window(op, forward, settings, source, dlq)
        if isinstance(op, JoinTableOp):
            return self._compile_join(op, forward, source)
        if isinstance(op, IntervalJoinOp | IntervalJoinRightOp):
            return self._compile_interval_side(op, forward, settings, source, dlq)
        raise TopologyError(f"unknown operator {op!r}")

    def _compile_window(self, op: WindowOp, forward: Emit, settings: Settings, source: str, dlq: str) -> Emit:
        engine = WindowedAggregation(
            op.window, op.aggregation, op.emit, allowed_lateness_ms=op.allowed_lateness_ms
        )
        window = CompiledWindow(
            op, engine, source, changelog_topic(settings.app_id, self.agent, op.name), dlq, forward
        )
        self.windows.append(window)
        rows, ctx, pick, check = window.rows, self._ctx, op.value, op.aggregation.check

        def absorb(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            # What would fail inside the engine fails here, on its own record, before any folding.
            if k.__class__ not in _PLAIN_KEYS:
                encode_key(k)
            value = v if pick is None else pick(v)
            check(value)
            rows.append((ctx[0], ctx[1], k, ctx[2], value))
            out.append((ABSORBED, None, None))

        return absorb

    def _compile_table_source(self, src: Source) -> Emit:
        assert src.table is not None
        table, ctx = self.tables[src.table.name].engine, self._ctx

        def apply(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes):
                raise TypeError(f"table {table.name!r} needs bytes keys (BytesSerde), got {type(k).__name__}")
            table.apply(ctx[1], k, v)
            out.append((ABSORBED, None, None))

        return apply

    def _compile_join(self, op: JoinTableOp, forward: Emit, source: str) -> Emit:
        table: CompiledTable | CompiledGlobalTable | None = self.tables.get(op.table.name)
        if table is None:
            table = self.global_tables.get(op.table.name)
        if table is None:
            raise TopologyError(f"join with table {op.table.name!r}, which is not declared in this topology")
        if isinstance(table, CompiledTable):
            self.copartitioned.append((source, table.source_topic))
        get, combine, left, ctx = table.engine.get, op.combine, op.how == "left", self._ctx

        def join(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes | None):
                raise TypeError(f"joining with table {table.name!r} needs bytes keys, got {type(k).__name__}")
            row = None if k is None else get(ctx[1], k)
            if row is not None or left:
                forward(k, combine(v, row), out)

        return join

    def _compile_interval_side(
        self,
        op: IntervalJoinOp | IntervalJoinRightOp,
        forward: Emit,
        settings: Settings,
        source: str,
        dlq: str,
    ) -> Emit:
        spec = op if isinstance(op, IntervalJoinOp) else op.join
        join = self.interval_joins.get(spec.name)
        if join is None:
            engine: IntervalJoin[Any, Any, Any] = IntervalJoin(
                spec.before_ms,
                spec.after_ms,
                "left" if spec.how == "left" else "inner",
                spec.combine,
                spec.grace_ms,
            )
            join = CompiledIntervalJoin(
                spec.name, engine, "", changelog_topic(settings.app_id, self.agent, spec.name), dlq
            )
            self.interval_joins[spec.name] = join
        side = 0 if isinstance(op, IntervalJoinOp) else 1
        if side == 0:
            join.source_topic, join.dlq_topic, join.forward = source, dlq, forward
        else:
            join.right_topic = source
        rows, ctx = join.rows, self._ctx

        def absorb(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes | None):
                raise TypeError(f"interval join {spec.name!r} needs bytes keys, got {type(k).__name__}")
            rows.append((ctx[0], ctx[1], side, k, ctx[2], v))
            out.append((ABSORBED, None, None))

        return absorb

    def _compile_branch(self, node: Stream, op: BranchOp, settings: Settings, source: str, dlq: str) -> Emit:
        by_name = {
            c.branch_name: self._compile(c, settings, source, dlq) for c in node.children if c.branch_name
        }
        routes = [(pred, by_name[name]) for name, pred in op.predicates]
        default = by_name[op.default] if op.default else None

        def branch(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            for pred, target in routes:
                if pred(v):
                    target(k, v, out)
                    return
            if default is not None:
                default(k, v, out)

        return branch

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

        This is the hot path: lookups are hoisted out of the loop and a failed record's partial outputs
        are cut off the shared output list instead of being staged in a per-record list. Records that
        reach a window are folded into it per partition after the loop, so windows work on columns.
        """
        outputs: list[OutputRecord] = []
        append = outputs.append
        tally = Tally()
        consumed, emitted, filtered, produced = tally.consumed, tally.emitted, tally.filtered, tally.produced
        now_ms = int(time.time() * 1000)
        sinks = []
        for s in self.sinks:
            lim = self.limits(s.topic)
            lo, hi = now_ms - lim.past_ms, now_ms + lim.future_ms
            sinks.append(
                (s.topic, s.key_serde.serialize, s.value_serde.serialize, s.key_ctx, s.value_ctx, lim, lo, hi)
            )
        windowed = bool(self.windows) or bool(self.interval_joins)
        stateful = windowed or bool(self.tables) or bool(self.global_tables)
        ctx = self._ctx
        poisoned, blocked = self.quarantine.poisoned, self.quarantine.blocked
        absorbed_by: Absorbed = {}
        current_topic: str | None = None
        for index, msg in enumerate(messages):
            topic = msg.topic() or ""
            if topic != current_topic:  # batches come in runs of one topic: re-bind only on a change
                current_topic = topic
                src = self.sources[topic]
                key_of, value_of = src.source.key_serde.deserialize, src.source.value_serde.deserialize
                key_ctx, value_ctx, emit = src.key_ctx, src.value_ctx, src.emit
                expectations, event_time = src.source.expectations, src.source.event_time
            consumed[topic] += 1
            if poisoned:
                hit = poisoned.get((topic, msg.partition() or 0, msg.offset() or 0))
                if hit is not None:
                    self._dead(outputs, tally, msg, src, hit[0], hit[1])
                    continue
            stage: Stage = "decode"
            mark = len(outputs)
            try:
                key = key_of(msg.key(), key_ctx)
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
                    if windowed:
                        ctx[2] = int(event_time(value, ts))
                results: list[tuple[int, Any, Any]] = []
                emit(key, value, results)
                absorbed = 0
                for sid, k, v in results:
                    if sid == ABSORBED:
                        absorbed += 1
                        continue
                    sink_topic, ser_key, ser_value, sink_key_ctx, sink_value_ctx, lim, lo, hi = sinks[sid]
                    kb, vb = ser_key(k, sink_key_ctx), ser_value(v, sink_value_ctx)
                    if (len(kb) if kb else 0) + (len(vb) if vb else 0) > lim.max_bytes or (
                        ts and not lo <= ts <= hi
                    ):
                        lim.check(kb, vb, ts, now_ms)
                    if blocked and (sink_topic, kb, vb) in blocked:
                        raise RecordRejected(blocked[(sink_topic, kb, vb)])
                    append(OutputRecord(sink_topic, kb, vb, ts))
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
                if absorbed:
                    absorbed_by[index] = (msg, src)
            else:
                filtered[topic] += 1
        if windowed:
            fold(self, messages, outputs, tally, absorbed_by, now_ms)
        return BatchResult(outputs, tally)

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
