"""Executes a topology on batches of consumed messages, without touching Kafka.

For each message: decode key and value (DLQ `decode`), check expectations (DLQ `validate`), run the
operator tree and serialize its outputs (DLQ `process`). Every consumed message ends in exactly one
outcome — emitted (>= 1 output), filtered (0 outputs) or dead-lettered — which is what makes the
accounting invariant exact. Outputs of a message that fails half-way are discarded with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamsvc.config import Settings
from streamsvc.dlq.records import OutputRecord, SourceMessage, Stage, dead_letter
from streamsvc.errors import DecodeError, TopologyError
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.topology.model import (
    BranchOp,
    FilterOp,
    FlatMapOp,
    MapOp,
    PeekOp,
    SelectKeyOp,
    Source,
    Stream,
    Topology,
)
from streamsvc.validation.expectations import first_violation

Emit = Callable[[Any, Any, list[tuple[int, Any, Any]]], None]


@dataclass(frozen=True)
class CompiledSink:
    topic: str
    key_serde: Serde
    value_serde: Serde
    key_ctx: SerdeContext
    value_ctx: SerdeContext


@dataclass(frozen=True)
class CompiledSource:
    topic: str
    dlq_topic: str
    source: Source
    key_ctx: SerdeContext
    value_ctx: SerdeContext
    emit: Emit


@dataclass
class Tally:
    """Per-source-topic outcome counts of one batch or one transaction."""

    consumed: Counter[str] = field(default_factory=Counter)
    emitted: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[tuple[str, Stage]] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.consumed.update(other.consumed)
        self.emitted.update(other.emitted)
        self.filtered.update(other.filtered)
        self.dead_lettered.update(other.dead_lettered)
        self.produced.update(other.produced)

    def clear(self) -> None:
        for c in (self.consumed, self.emitted, self.filtered, self.dead_lettered, self.produced):
            c.clear()

    def balanced(self) -> bool:
        """consumed = emitted + filtered + dead-lettered, per source topic."""
        dead: Counter[str] = Counter()
        for (topic, _), n in self.dead_lettered.items():
            dead[topic] += n
        return all(
            self.consumed[t] == self.emitted[t] + self.filtered[t] + dead[t]
            for t in set(self.consumed) | set(self.emitted) | set(self.filtered) | set(dead)
        )


@dataclass
class BatchResult:
    outputs: list[OutputRecord]
    tally: Tally


class Processor:
    """A topology compiled against concrete topic names, ready to process message batches."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        topology.validate()
        self.app = settings.app_id
        self.sinks: list[CompiledSink] = []
        self.sources: dict[str, CompiledSource] = {}
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
                emit=self._compile(src, settings),
            )

        loops = set(self.sources) & set(self.output_topics)
        if loops:
            raise TopologyError(f"{topology.name!r} would write to its source topics {sorted(loops)}")

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

    def _compile(self, node: Stream, settings: Settings) -> Emit:
        children = [self._compile(c, settings) for c in node.children if c.branch_name is None]
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
            return self._compile_branch(node, op, settings)
        raise TopologyError(f"unknown operator {op!r}")

    def _compile_branch(self, node: Stream, op: BranchOp, settings: Settings) -> Emit:
        by_name = {c.branch_name: self._compile(c, settings) for c in node.children if c.branch_name}
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

    def process(self, messages: Sequence[SourceMessage]) -> BatchResult:
        """Process one batch; never raises for bad records (they become DLQ outputs).

        This is the hot path: lookups are hoisted out of the loop and a failed record's partial outputs
        are cut off the shared output list instead of being staged in a per-record list.
        """
        outputs: list[OutputRecord] = []
        append = outputs.append
        tally = Tally()
        consumed, emitted, filtered, produced = tally.consumed, tally.emitted, tally.filtered, tally.produced
        sinks = [
            (s.topic, s.key_serde.serialize, s.value_serde.serialize, s.key_ctx, s.value_ctx)
            for s in self.sinks
        ]
        current_topic: str | None = None
        for msg in messages:
            topic = msg.topic() or ""
            if topic != current_topic:  # batches come in runs of one topic: re-bind only on a change
                current_topic = topic
                src = self.sources[topic]
                key_of, value_of = src.source.key_serde.deserialize, src.source.value_serde.deserialize
                key_ctx, value_ctx, emit = src.key_ctx, src.value_ctx, src.emit
                expectations = src.source.expectations
            consumed[topic] += 1
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
                results: list[tuple[int, Any, Any]] = []
                emit(key, value, results)
                ts = msg.timestamp()[1]
                if ts < 0:  # no timestamp on the source record: let the broker assign one
                    ts = 0
                for sid, k, v in results:
                    sink_topic, ser_key, ser_value, sink_key_ctx, sink_value_ctx = sinks[sid]
                    append(
                        OutputRecord(sink_topic, ser_key(k, sink_key_ctx), ser_value(v, sink_value_ctx), ts)
                    )
            except DecodeError as exc:
                del outputs[mark:]
                self._dead(outputs, tally, msg, src, "decode" if stage == "decode" else "process", exc)
                continue
            except Exception as exc:  # an operator or a serializer raised: the record goes to the DLQ
                del outputs[mark:]
                self._dead(outputs, tally, msg, src, stage, exc)
                continue
            if results:
                emitted[topic] += 1
                for sid, _, _ in results:
                    produced[sinks[sid][0]] += 1
            else:
                filtered[topic] += 1
        return BatchResult(outputs, tally)

    def _dead(
        self,
        outputs: list[OutputRecord],
        tally: Tally,
        msg: SourceMessage,
        src: CompiledSource,
        stage: Stage,
        exc: BaseException | str,
    ) -> None:
        rec = dead_letter(msg, src.dlq_topic, stage, exc, self.app)
        outputs.append(rec)
        tally.dead_lettered[(src.topic, stage)] += 1
        tally.produced[rec.topic] += 1
