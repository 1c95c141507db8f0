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
        """Process one batch; never raises for bad records (they become DLQ outputs)."""
        outputs: list[OutputRecord] = []
        tally = Tally()
        sinks = self.sinks
        for msg in messages:
            topic = msg.topic() or ""
            src = self.sources[topic]
            tally.consumed[topic] += 1
            stage: Stage = "decode"
            try:
                key = src.source.key_serde.deserialize(_raw(msg.key()), src.key_ctx)
                value = src.source.value_serde.deserialize(_raw(msg.value()), src.value_ctx)
                stage = "validate"
                violation = (
                    first_violation(src.source.expectations, value) if src.source.expectations else None
                )
                if violation is not None:
                    self._dead(outputs, tally, msg, src, "validate", violation)
                    continue
                stage = "process"
                results: list[tuple[int, Any, Any]] = []
                src.emit(key, value, results)
                _, ts = msg.timestamp()
                produced = [
                    OutputRecord(
                        sinks[sid].topic,
                        sinks[sid].key_serde.serialize(k, sinks[sid].key_ctx),
                        sinks[sid].value_serde.serialize(v, sinks[sid].value_ctx),
                        ts,
                    )
                    for sid, k, v in results
                ]
            except DecodeError as exc:
                self._dead(outputs, tally, msg, src, "decode" if stage == "decode" else "process", exc)
                continue
            except Exception as exc:  # an operator or a serializer raised: the record goes to the DLQ
                self._dead(outputs, tally, msg, src, stage, exc)
                continue
            if produced:
                outputs += produced
                tally.emitted[topic] += 1
                for rec in produced:
                    tally.produced[rec.topic] += 1
            else:
                tally.filtered[topic] += 1
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


def _raw(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data
